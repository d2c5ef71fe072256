"""Command line: ``python -m theory_modal.testing.emulator [--port P] [--secrets secrets.json]``.

:func:`main` is also meant to back a ``theory-modal emulator`` subcommand.

Prints exactly one line, ``LISTENING 127.0.0.1:<port>``, on stdout once the emulator accepts connections, then
serves until SIGTERM or SIGINT, stops every container and exits 0. Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .emulator import ModalEmulator


def _load_secrets(path: str | None) -> dict[str, dict[str, str]]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not all(
        isinstance(values, dict) and all(isinstance(v, str) for v in values.values()) for values in data.values()
    ):
        raise SystemExit(f'{path}: expected a JSON object of the form {{"secret-name": {{"KEY": "value"}}}}')
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m theory_modal.testing.emulator",
        description="Loopback emulator of Modal's control plane (modal==1.6.4) running real container processes.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--secrets", help='JSON file: {"secret-name": {"KEY": "value"}}')
    parser.add_argument("--state-dir", help="parent directory for the emulator's private state directory")
    parser.add_argument("--token-id", default="ak-emulator", help="token id clients must present")
    parser.add_argument("--token-secret", default="as-emulator", help="token secret clients must present")
    parser.add_argument("--max-containers", type=int, default=1, help="containers per function (default 1)")
    parser.add_argument("--log-level", default="INFO", help="log level for stderr (default INFO)")
    parser.add_argument("--echo", action="store_true", help="log container output at INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    # grpclib reports every client that hangs up mid-request at INFO; that is routine here.
    logging.getLogger("grpclib").setLevel(max(logging.WARNING, logging.getLogger().level))
    emulator = ModalEmulator(
        port=args.port,
        secrets=_load_secrets(args.secrets),
        state_dir=args.state_dir,
        token_id=args.token_id,
        token_secret=args.token_secret,
        max_containers_per_function=args.max_containers,
        echo_container_output=args.echo,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        emulator.start()
        print(f"LISTENING 127.0.0.1:{emulator.port}", flush=True)
        print(
            "point clients at it with: " + " ".join(f"{key}={value}" for key, value in emulator.client_env().items()),
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
