"""The local adapter's event loop: one per process, and stopped cleanly at exit (a daemon thread still holding
a lock when the interpreter finalizes deadlocks the exit: seen as `theory-modal run` hanging after its output)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

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


# ------------------------------------------------------------------------------------ LiteLLM's exit hooks
# litellm is first imported inside a call, on the adapter's loop, so its atexit hooks (the logging worker's
# flush, the async client cleanup) are registered after the adapter's own and, atexit being LIFO, used to run
# first, while the loop thread was still running the worker: both threads could start one logging coroutine.
_RACE = """
import atexit, asyncio, sys, time
ran = []
atexit.register(lambda: print("callback ran", len(ran), "time(s)", file=sys.stderr))  # first registered: runs last
from theory_modal.adapters import local as local_mod

async def work():
    from providers.litellm_provider import load_litellm
    load_litellm()  # on the loop thread, after the loop's exit hook was registered (as in `theory-modal run`)
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as worker

    track = worker._track_dequeued

    def descheduled_after_dequeue(task):  # the loop thread loses the CPU right after the worker dequeues
        track(task)
        time.sleep(0.5)

    worker._track_dequeued = descheduled_after_dequeue

    async def log_success():
        ran.append(1)

    asyncio.get_running_loop().call_later(0.05, lambda: worker.ensure_initialized_and_enqueue(log_success()))

local_mod._run(work())
time.sleep(0.2)  # exit begins while the dequeued coroutine has not started on the loop
"""


def test_litellm_logging_worker_is_flushed_on_our_loop_before_its_own_exit_hook_runs(tmp_path):
    """A logging coroutine LiteLLM's worker has dequeued but not started when the process exits runs exactly
    once, and nothing is printed: the adapter's exit hook runs before LiteLLM's and drains the worker on the
    loop it lives on. (Without that, LiteLLM's hook ran it on a second loop in the main thread and the worker
    then failed with "cannot reuse already awaited coroutine", a traceback at exit.) The window is widened by
    a sleep right after the dequeue, so this reproduces the race every time, not once in fifteen runs."""
    r = subprocess.run([sys.executable, "-c", _RACE], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "callback ran 1 time(s)\n"


def test_the_exit_hook_is_registered_again_once_litellm_is_loaded(monkeypatch):
    """The ordering the fix relies on: after a call that loaded litellm, ``_stop_loop`` is the last registered
    exit hook (so it runs first); before litellm is loaded nothing is re-registered."""
    import atexit

    local_mod._run(asyncio.sleep(0))  # the loop exists (its first start registers the hook: not under test here)
    calls: list[str] = []
    monkeypatch.setattr(atexit, "unregister", lambda f: calls.append(f"unregister {f.__name__}"))
    monkeypatch.setattr(atexit, "register", lambda f, *a, **k: calls.append(f"register {f.__name__}"))
    monkeypatch.setattr(local_mod, "_first_at_exit", False)
    monkeypatch.delitem(sys.modules, local_mod._LITELLM_WORKER, raising=False)
    local_mod._run(asyncio.sleep(0))
    assert calls == [] and local_mod._first_at_exit is False
    monkeypatch.setitem(sys.modules, local_mod._LITELLM_WORKER, object())
    local_mod._run(asyncio.sleep(0))
    local_mod._run(asyncio.sleep(0))
    assert calls == ["unregister _stop_loop", "register _stop_loop"] and local_mod._first_at_exit is True


@pytest.mark.slow
def test_the_smoke_cli_exits_without_a_traceback_20_times(tmp_path):
    """`theory-modal run` (local adapter, smoke mode, real LiteLLM) 20 times, two at a time so the machine is
    busy (the race showed about once in fifteen runs under load): every run succeeds with a clean stderr."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE")) and not k.startswith("MODAL_") and k != "LLM_API_BASE"}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "absent.toml"), NO_COLOR="1", COLUMNS="200")
    argv = [sys.executable, "-m", "theory_modal", "run"]
    failures = []
    for _ in range(10):
        procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            if (proc.returncode != 0 or out.strip() != "smoke reply from openai/gpt-4o-mini: Hello"
                    or "Traceback" in err or "Error" in err or err.count("\n") != 1):
                failures.append((proc.returncode, out, err))
    assert failures == []
