"""The local adapter's event loop: one per process, and stopped cleanly at exit (a daemon thread still holding
a lock when the interpreter finalizes deadlocks the exit: seen as `theory-modal run` hanging after its output)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

from theory_modal.adapters import LocalAdapter
from theory_modal.adapters import local as local_mod


def test_stopping_cancels_leftover_tasks_joins_the_thread_and_a_later_call_starts_a_new_loop():
    adapter = LocalAdapter()
    assert adapter.run("llm/mock@1", {"prompt": "x", "mode": "smoke"})["text"] == "mock reply to: x"
    loop, thread = local_mod._loop, local_mod._thread
    assert loop is not None and thread is not None and thread.is_alive()

    async def forever() -> None:  # like LiteLLM's background logging worker
        await asyncio.sleep(3600)

    leftover = asyncio.run_coroutine_threadsafe(forever(), loop)
    local_mod._stop_loop()
    assert leftover.cancelled() or isinstance(leftover.exception(timeout=1), asyncio.CancelledError)
    assert not thread.is_alive() and loop.is_closed()
    assert "theory-modal-local-loop" not in [t.name for t in threading.enumerate()]
    assert adapter.run("llm/mock@1", {"prompt": "y", "mode": "smoke"})["text"] == "mock reply to: y"
    assert local_mod._thread is not thread and local_mod._thread.is_alive()


def test_a_process_that_used_the_local_adapter_exits_promptly_and_quietly(tmp_path):
    code = (
        "from theory_modal.adapters import LocalAdapter\n"
        "a = LocalAdapter()\n"
        "for i in range(5):\n"
        "    a.run('llm/litellm@1', {'prompt': f'p{i}', 'mode': 'smoke'})\n"
        "    s = a.stream('llm/litellm@1', {'prompt': f's{i}', 'mode': 'smoke'}); ''.join(s)\n"
        "print('done')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr
    assert r.stderr == ""
