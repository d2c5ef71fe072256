"""Entry file for Modal, and the smoke test of every processor.

    modal deploy deploy.py                    # deploy the app (name: $THEORY_MODAL_APP or "theory")
    modal run deploy.py --mode smoke          # run every processor remotely in smoke mode; non-zero exit on failure
    modal run deploy.py --mode live           # the same against real providers (needs keys via THEORY_MODAL_SECRETS)
    python deploy.py --mode smoke             # the same checks in-process through the local adapter, offline
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from theory_modal.app import FUNCTIONS, app  # noqa: F401 - `modal deploy` finds `app` here
from theory_modal.catalog import PROCESSORS, Processor

SMOKE_PROMPT = "Say hello to theory-modal"

#: call(processor, payload) -> Response; stream(processor, payload) -> (streamed text, the done Response)
Call = Callable[[Processor, dict], dict]
Stream = Callable[[Processor, dict], "tuple[str, dict | None]"]


def read_events(events: Any) -> tuple[str, dict | None]:
    """Wire stream events -> (the text of the deltas, the Response of the final done event or None)."""
    text, final = [], None
    for event in events:
        if event.get("type") == "delta":
            text.append(event["text"])
        elif event.get("type") == "done":
            final = event["response"]
    return "".join(text), final


def check_processors(mode: str, call: Call, stream: Stream) -> list[dict[str, Any]]:
    """Run chat and stream for every processor; a check passes when both work, agree on the text, and say
    which mode they ran in."""
    rows = []
    for p in PROCESSORS:
        payload = {"prompt": SMOKE_PROMPT, "mode": mode}
        t0 = time.perf_counter()
        try:
            resp = call(p, payload)
            streamed, final = stream(p, payload)
            if final is None or streamed != final["text"]:
                raise RuntimeError("stream did not end with a reply matching its chunks")
            if resp["mode"] != mode or final["mode"] != mode:
                raise RuntimeError(f"asked for mode {mode!r}, the reply says {resp['mode']!r} / {final['mode']!r}")
            if mode == "smoke" and streamed != resp["text"]:
                raise RuntimeError(f"stream text {streamed!r} differs from chat text {resp['text']!r}")
            rows.append({"ref": p.ref, "ok": True, "tokens": resp["usage"]["tokens_in"] + resp["usage"]["tokens_out"],
                         "latency_ms": resp["usage"]["latency_ms"], "detail": ""})
        except Exception as exc:  # noqa: BLE001 - one failing processor must not hide the others
            rows.append({"ref": p.ref, "ok": False, "tokens": 0, "latency_ms": int((time.perf_counter() - t0) * 1000),
                         "detail": f"{type(exc).__name__}: {exc}"})
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("ref", "ok", "tokens", "latency ms", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["ref"], "yes" if r["ok"] else "NO", str(r["tokens"]), str(r["latency_ms"]), r["detail"])
    Console(width=140).print(table)


@app.local_entrypoint()
def main(mode: str = "smoke") -> None:
    """`modal run deploy.py --mode smoke`: every processor, remotely."""
    if mode not in ("smoke", "live"):
        raise SystemExit(f"--mode must be smoke or live, got {mode!r}")
    rows = check_processors(
        mode,
        lambda p, payload: FUNCTIONS[p.chat_function].remote(payload),
        lambda p, payload: read_events(FUNCTIONS[p.stream_function].remote_gen(payload)),
    )
    print_table(rows, f"theory-modal {mode} checks (remote)")
    if not all(r["ok"] for r in rows):
        raise SystemExit(1)


def _local(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python deploy.py", description="Run the smoke checks in-process.")
    parser.add_argument("--mode", choices=("smoke", "live"), default="smoke")
    mode = parser.parse_args(argv).mode
    from theory_modal.adapters import LocalAdapter

    local = LocalAdapter()

    def stream(p: Processor, payload: dict) -> tuple[str, dict | None]:
        s = local.stream(p.ref, payload)
        return "".join(s), s.response

    rows = check_processors(mode, lambda p, payload: local.run(p.ref, payload), stream)
    print_table(rows, f"theory-modal {mode} checks (local adapter)")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(_local(sys.argv[1:]))
