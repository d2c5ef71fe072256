"""Fixtures of the reliability suite: sentinel keys in the environment, debug logging, the secret scan, the
live-mode runtime reset, and the order that puts the doc test after everything it reports on."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from reliability_spec import REPORT, SENTINEL_CORE, SENTINEL_ENV

DEBUG_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "providers", "openai", "httpx", "httpcore", "aiohttp")


def pytest_collection_modifyitems(session, config, items):
    """The doc test renders what the other reliability tests recorded: run it last."""
    last = [item for item in items if item.nodeid.endswith("test_reliability_doc.py::test_reliability_doc_is_current")]
    for item in last:
        items.remove(item)
        items.append(item)


@pytest.fixture(scope="session")
def report():
    return REPORT


@pytest.fixture(scope="session")
def litellm_loaded():
    """Import litellm once, up front, so no cell's time bound pays for the ~3 s import."""
    from providers.litellm_provider import load_litellm

    return load_litellm()


@pytest.fixture
def sentinel_env(no_provider_keys, monkeypatch):
    """The environment a container has: a (sentinel) key, and no other provider settings."""
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_ENV)


@pytest.fixture
def debug_logging(caplog, monkeypatch, litellm_loaded):
    """Everything at DEBUG, litellm's own verbose printing included: the worst case for a leak."""
    caplog.set_level(logging.DEBUG)
    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setattr(litellm_loaded, "set_verbose", True)
    return caplog


@pytest.fixture
def live_runtime():
    """The handlers' provider cache, empty before and after: live mode builds its provider from the env."""
    from theory_modal import handlers

    handlers._providers.clear()
    yield handlers
    handlers._providers.clear()


def exception_text(err: BaseException) -> str:
    """Everything an exception can show: str, repr, args, the formatted traceback, and every chained
    exception (even a suppressed ``__context__``, which a debugger or error tracker may still walk)."""
    parts = [str(err), repr(err), repr(err.args), "".join(traceback.format_exception(err))]
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts += [str(cur), repr(cur)]
        cur = cur.__cause__ or cur.__context__
    return "\n".join(parts)


def log_text(caplog) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        try:
            parts.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad format string is not our concern here
            parts.append(str(record.msg))
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(exception_text(record.exc_info[1]))
    return "\n".join(parts)


def drain_litellm_logging(timeout: float = 2.0) -> None:
    """Wait (bounded) for litellm's background logging threads to finish this call's records, so they land in
    this test's capture and scan, not in a later test's or on the terminal."""
    import time

    from litellm.litellm_core_utils.thread_pool_executor import executor

    slots = getattr(executor, "_pending_slots", None)
    deadline = time.monotonic() + timeout
    while slots is not None and slots._value < executor._max_pending_tasks and time.monotonic() < deadline:
        time.sleep(0.005)


class SecretScan:
    """Assert no sentinel is in a surface's text, and count the check for the doc."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self, surface: str, text: object) -> None:
        if not isinstance(text, str):
            text = json.dumps(text, default=repr)
        assert SENTINEL_CORE not in text, f"a sentinel key leaked into {surface} ({self.where}):\n{text[:2000]}"
        REPORT.count_secret_check(surface)

    def error(self, err: BaseException) -> None:
        self("exception text", exception_text(err))
        if hasattr(err, "to_dict"):
            self("error dict (batch / Modal form)", err.to_dict())

    def output(self, caplog, capfd) -> None:
        drain_litellm_logging()
        self("log records", log_text(caplog))
        out, errout = capfd.readouterr()
        self("stdout", out)
        self("stderr", errout)


@pytest.fixture
def secret_scan(request):
    return SecretScan(request.node.name)
