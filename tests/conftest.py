"""Suite-wide guards and fixtures: tests never leave the machine."""

from __future__ import annotations

import pytest

# Fails any test that resolves or connects to anything but loopback (an autouse fixture).
pytest_plugins = ["theory_modal.testing.network_guard"]


# ----------------------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="session")
def _fake_llm_server():
    from theory_modal.testing.fake_llm import FakeLLMServer

    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def fake_llm(_fake_llm_server):
    """A loopback fake OpenAI-compatible + Ollama server, reset for each test."""
    _fake_llm_server.reset()
    yield _fake_llm_server
    _fake_llm_server.reset()


@pytest.fixture
def no_provider_keys(monkeypatch):
    """Start from an environment with no provider keys and no Ollama base, whatever the host has."""
    import os

    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_API_BASE")) or name in ("LLM_API_BASE", "OLLAMA_HOST"):
            monkeypatch.delenv(name, raising=False)


def pytest_configure(config):
    # tests/contract.py is a library of tests, imported by the provider and adapter suites.
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
