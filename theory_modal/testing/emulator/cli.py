"""Command line: ``theory-modal emulator`` and ``python -m theory_modal.testing.emulator`` (one click command).

Prints exactly one line, ``LISTENING 127.0.0.1:<port>``, on stdout once the emulator accepts connections (scripts
wait for it), then the variables to export on stderr, and serves until SIGTERM or SIGINT, stops every container
and exits 0. Bad input (a missing, unreadable or wrong-shaped secrets file, a bad option) is one line on stderr
and exit 2, before anything starts.

This module imports neither the emulator nor grpclib at import time, so the ``theory-modal`` CLI can offer the
command (and its ``--help``) at no cost.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

__all__ = ["SECRETS_FORMAT", "SecretsFileError", "emulator_command", "export_lines", "load_secrets", "main"]

EXIT_BAD_INPUT = 2

#: The secrets file format, shown in ``--help`` and in the README.
SECRETS_FORMAT = (
    'A JSON object mapping each Modal Secret name to its variables, all strings: '
    '{"openai-secret": {"OPENAI_API_KEY": "sk-test"}, "other-secret": {"A": "1", "B": "2"}}. '
    "Apps name them as usual (modal.Secret.from_name(\"openai-secret\")); a container gets the variables of the "
    "secrets its function names, and nothing from your shell."
)


class SecretsFileError(click.ClickException):
    """The ``--secrets`` file is missing, unreadable or not shaped as :data:`SECRETS_FORMAT` (exit 2)."""

    exit_code = EXIT_BAD_INPUT


def load_secrets(path: str | Path | None) -> dict[str, dict[str, str]]:
    """Read a secrets file; every failure is a :class:`SecretsFileError` naming the file and what to fix."""
    if path is None:
        return {}
    shape = 'expected {"secret-name": {"KEY": "value"}, ...} (see theory-modal emulator --help)'
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretsFileError(f"--secrets {path}: no such file") from None
    except IsADirectoryError:
        raise SecretsFileError(f"--secrets {path}: is a directory, not a JSON file") from None
    except PermissionError:
        raise SecretsFileError(f"--secrets {path}: permission denied (cannot read it)") from None
    except UnicodeDecodeError:
        raise SecretsFileError(f"--secrets {path}: not UTF-8 text; {shape}") from None
    except OSError as exc:
        raise SecretsFileError(f"--secrets {path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SecretsFileError(f"--secrets {path}: not valid JSON (line {exc.lineno}: {exc.msg}); {shape}") from None
    if not isinstance(data, dict):
        raise SecretsFileError(f"--secrets {path}: the top level is a JSON {_json_type(data)}; {shape}")
    for name, values in data.items():
        if not name.strip():
            raise SecretsFileError(f"--secrets {path}: a secret name is empty; {shape}")
        if not isinstance(values, dict):
            raise SecretsFileError(
                f"--secrets {path}: secret {name!r} is a JSON {_json_type(values)}, expected an object of "
                f'"KEY": "value" pairs'
            )
        for key, value in values.items():
            # Name the key, never the value: it may be a real secret.
            if not key or "=" in key or "\x00" in key or key != key.strip():
                raise SecretsFileError(
                    f"--secrets {path}: secret {name!r} has the variable name {key!r}, which cannot be an "
                    "environment variable (empty, '=', NUL or surrounding spaces)"
                )
            if not isinstance(value, str):
                raise SecretsFileError(
                    f"--secrets {path}: {name!r}.{key!r} is a JSON {_json_type(value)}, expected a string"
                )
            if "\x00" in value:
                raise SecretsFileError(f"--secrets {path}: {name!r}.{key!r} contains a NUL character")
    return data


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def export_lines(env: dict[str, str]) -> list[str]:
    """What to paste into a shell to use the emulator, and how to go back to real Modal."""
    return [
        "export " + " ".join(f"{k}={v}" for k, v in env.items()),
        "# back to real Modal: unset " + " ".join(env),
    ]


def _serve(port: int, secrets: dict[str, dict[str, str]], state_dir: str | None, max_containers: int,
           token_id: str, token_secret: str, log_level: str, echo: bool) -> int:
    from .emulator import ModalEmulator  # the heavy part (modal, grpclib) loads only to serve

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    # grpclib reports every client that hangs up mid-request at INFO; that is routine here.
    logging.getLogger("grpclib").setLevel(max(logging.WARNING, logging.getLogger().level))
    emulator = ModalEmulator(
        port=port,
        secrets=secrets,
        state_dir=state_dir,
        token_id=token_id,
        token_secret=token_secret,
        max_containers_per_function=max_containers,
        echo_container_output=echo,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        emulator.start()
        print(f"LISTENING 127.0.0.1:{emulator.port}", flush=True)
        print("point modal clients at it with:\n  " + "\n  ".join(export_lines(emulator.client_env())),
              file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


_HELP = f"""Run the loopback Modal emulator (speaks modal==1.6.4) on 127.0.0.1 until SIGTERM or Ctrl-C.

Prints LISTENING 127.0.0.1:PORT on stdout once it accepts connections, then on stderr the variables to export so
that `modal deploy`, `modal run` and your code talk to it:

\b
  export MODAL_SERVER_URL=http://127.0.0.1:PORT MODAL_TOKEN_ID=ak-emulator
         MODAL_TOKEN_SECRET=as-emulator MODAL_CONFIG_PATH=<state dir>/no-modal-config.toml
         MODAL_ENVIRONMENT=main

MODAL_CONFIG_PATH points at a file that never exists, so your ~/.modal.toml does not interfere. To go back to
real Modal: unset MODAL_SERVER_URL MODAL_TOKEN_ID MODAL_TOKEN_SECRET MODAL_CONFIG_PATH MODAL_ENVIRONMENT.

Secrets file (--secrets): {SECRETS_FORMAT}
"""


@click.command("emulator", help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1; 0 picks a free one.")
@click.option("--secrets", "secrets_file", type=str, default=None, metavar="FILE",
              help='JSON file of named secrets: {"secret-name": {"KEY": "value"}}.')
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Parent directory for the emulator's private state (default: the system temp dir).")
@click.option("--max-containers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Containers per function.")
@click.option("--token-id", default="ak-emulator", show_default=True, help="Token id clients must present.")
@click.option("--token-secret", default="as-emulator", show_default=True, help="Token secret clients must present.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="INFO", show_default=True, help="Log level on stderr.")
@click.option("--echo", is_flag=True, help="Log container output at INFO.")
def emulator_command(port: int, secrets_file: str | None, state_dir: str | None, max_containers: int,
                     token_id: str, token_secret: str, log_level: str, echo: bool) -> None:
    secrets = load_secrets(secrets_file)  # before anything starts: a bad file costs nothing
    raise SystemExit(_serve(port, secrets, state_dir, max_containers, token_id, token_secret, log_level, echo))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m theory_modal.testing.emulator``: errors are one ``error: ...`` line, never a traceback."""
    try:
        emulator_command.main(args=list(argv) if argv is not None else None,
                              prog_name="python -m theory_modal.testing.emulator", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return EXIT_BAD_INPUT if isinstance(exc, click.UsageError) else exc.exit_code
    except click.Abort:
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - e.g. ModalVersionError, a port in use: one line, exit 1
        click.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        return 1
    return 0
