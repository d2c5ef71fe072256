"""Redaction re-entered on one thread must not deadlock.

``known_secrets`` allocates while it holds its lock, so a garbage collection can run inside it; what that
collection runs (finalizers, ``gc.callbacks``) may log, and a logger with the redacting filter calls
``redact`` -> ``known_secrets`` again on the same thread. Found as a hung full-suite run: an abandoned httpx
stream was finalized inside ``known_secrets`` and httpcore's DEBUG trace went through the filter."""

from __future__ import annotations

import gc
import logging
import threading

from providers import redact as redact_mod
from providers.redact import install_log_redaction, redact, remember_secret


WORKER = "redact-reentry-worker"


def _in_thread(fn, timeout: float = 10.0) -> list:
    """Run ``fn`` in a daemon thread; a deadlock shows as a thread still alive after ``timeout``. Then the lock
    is released from here (a plain Lock allows it), so a regression fails this test without hanging the rest
    of the suite on a lock held forever."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(fn()), daemon=True, name=WORKER)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        try:
            redact_mod._lock.release()
        except RuntimeError:
            pass
        raise AssertionError("redaction deadlocked on its own lock")
    return out


def test_redact_called_while_this_thread_holds_the_lock_completes():
    """The minimal form: the nested call happens while the outer one holds the lock."""
    secret = "sk-REENTRYabcdefghijklmnop"

    def nested() -> str:
        with redact_mod._lock:  # as known_secrets holds it
            return redact(f"upstream said {secret}", secret)

    assert _in_thread(nested) == ["upstream said [REDACTED]"]


def test_a_collection_inside_known_secrets_that_logs_through_the_filter_completes():
    """The path seen in the wild: a collection triggered inside known_secrets runs a callback that logs
    through a redacting logger. The threshold of 1 makes the collection happen inside it every time."""
    logger_name = "theory_modal.test.reentry"
    install_log_redaction(logger_name)
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    owner = type("Owner", (), {})()
    remember_secret("sk-OWNEDabcdefghijklmnop", owner)  # known_secrets now iterates the weak dict too
    depth = [0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and depth[0] == 0 and threading.current_thread().name == WORKER:
            depth[0] += 1
            try:
                logger.debug("closing stream for key sk-OWNEDabcdefghijklmnop")
            finally:
                depth[0] -= 1

    old = gc.get_threshold()
    gc.callbacks.append(on_gc)
    gc.set_threshold(1)
    try:
        result = _in_thread(lambda: redact_mod.known_secrets("sk-EXTRAabcdefghijklmnop"))
    finally:
        gc.set_threshold(*old)
        gc.callbacks.remove(on_gc)
        logger.removeHandler(handler)
    assert "sk-OWNEDabcdefghijklmnop" in result[0]
    assert records and all("sk-OWNED" not in r for r in records)
