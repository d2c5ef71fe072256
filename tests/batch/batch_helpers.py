"""Helpers shared by the batch tests (a unique module name: conftest modules shadow each other)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[2]
MOCK = "llm/mock@1"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE")) and not k.startswith("MODAL_") and k != "LLM_API_BASE"}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "absent.toml"), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def cli(tmp_path: Path, *args: str, stdin: Any = None, timeout: float = 120, preexec_fn: Any = None,
        **env: str) -> subprocess.CompletedProcess:
    """``theory-modal <args>`` in a subprocess, in ``tmp_path``."""
    return subprocess.run([sys.executable, "-m", "theory_modal", *args], capture_output=True, text=True,
                          env=env_for(tmp_path, **env), cwd=tmp_path, timeout=timeout, stdin=stdin,
                          preexec_fn=preexec_fn)


def batch_args(*extra: str, ref: str = MOCK, inp: str = "in.jsonl", out: str = "out.jsonl") -> list[str]:
    return ["batch", "--ref", ref, "--input", inp, "--output", out, *extra]


def write_jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every output line, asserting each is whole JSON ending in a newline."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn last line: {data[-80:]!r}"
    rows = []
    for raw in data.split(b"\n")[:-1]:
        row = json.loads(raw.decode("utf-8"))
        assert isinstance(row, dict)
        rows.append(row)
    return rows


def by_line(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        assert row["line"] not in out, f"line {row['line']} answered twice"
        out[row["line"]] = row
    return out


def run_engine(tmp_path: Path, data: bytes, *, adapter: Any = None, out: str = "out.jsonl",
               stop_after: int | None = None, engine_hook: dict[str, Any] | None = None,
               **options: Any) -> Any:
    """One in-process run. ``stop_after=k`` requests a stop once k lines have been written by this run."""
    from theory_modal.adapters import get_adapter
    from theory_modal.batch import Batch, BatchOptions, BatchSummary

    options.setdefault("ref", MOCK)
    options.setdefault("mode", "smoke")
    opts = BatchOptions(output=str(tmp_path / out), input_data=data, **options)
    engine: Batch

    def progress(s: BatchSummary) -> None:
        if stop_after is not None and s.ok + s.failed >= stop_after:
            engine.request_stop()

    engine = Batch(opts, adapter or get_adapter("local"), on_progress=progress)
    if engine_hook is not None:
        engine_hook["engine"] = engine
    return engine.run()


class GateAdapter:
    """An adapter whose calls block until released; counts the calls in flight. Answers like the mock."""

    def __init__(self, *, fail: BaseException | None = None) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.calls: list[dict[str, Any]] = []
        self.started = threading.Semaphore(0)
        self.fail = fail

    def run(self, ref: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.calls.append(payload)
        self.started.release()
        try:
            self.gate.wait(30)
            if self.fail is not None:
                raise self.fail
            return {"ref": ref, "text": f"mock reply to: {payload['prompt']}", "provider": "mock", "model": "mock",
                    "usage": {"tokens_in": 1, "tokens_out": 1, "latency_ms": 0, "usd_micros": 0}}
        finally:
            with self.lock:
                self.active -= 1


def cli_inproc(tmp_path: Path, monkeypatch: Any, capsys: Any, *args: str, **env: str) -> tuple[int, str, str]:
    """``theory-modal <args>`` through ``main()`` in this process (fast; no signals involved)."""
    from theory_modal.cli import main

    for key in list(os.environ):
        if key.endswith(("_API_KEY", "_API_BASE")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
