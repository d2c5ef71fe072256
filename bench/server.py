"""The loopback OpenAI-compatible server, in its own process, so its CPU time is not charged to the client.

It is ``python -m theory_modal.testing.fake_llm`` (stdlib ``http.server``, HTTP/1.1 keep-alive, ``TCP_NODELAY``
on: without it every non-streaming call pays ~40 ms of Nagle + delayed ACK).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["ServerProcess", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"LISTENING 127\.0\.0\.1:(\d+)")


class ServerProcess:
    """``with ServerProcess(latency_ms=50, chunks=8) as srv: srv.base`` -> ``http://127.0.0.1:<port>/v1``."""

    def __init__(self, *, latency_ms: float = 0.0, chunks: int | None = None, start_timeout: float = 30.0) -> None:
        self.latency_ms = float(latency_ms)
        self.chunks = chunks
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        """The OpenAI-compatible ``api_base``."""
        return self.url + "/v1"

    def describe(self) -> dict[str, object]:
        return {"latency_ms": self.latency_ms, "chunks": self.chunks, "process": "separate", "tcp_nodelay": True}

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "theory_modal.testing.fake_llm", "--port", "0", "--latency-ms", f"{self.latency_ms:g}"]
        if self.chunks:
            cmd += ["--chunks", str(self.chunks)]
        env = {k: v for k, v in os.environ.items()}
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True, start_new_session=True
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.start_timeout)
        m = _LISTENING.search(line[0]) if line else None
        if m is None:
            self.stop()
            self._stderr.seek(0)
            raise RuntimeError(f"fake LLM server did not start: {' '.join(cmd)}\n{self._stderr.read()[-2000:]}")
        self.port = int(m.group(1))
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()
