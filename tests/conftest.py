"""Suite-wide guards: tests never leave the machine."""

from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NonLoopbackNetworkError(AssertionError):
    """A test tried to reach an address other than loopback."""


def _is_loopback_host(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host)
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check_address(sock: socket.socket, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # unix sockets and socketpairs are local by construction
    host = address[0] if isinstance(address, tuple) else address
    if not _is_loopback_host(host):
        raise NonLoopbackNetworkError(f"test opened a non-loopback connection to {address!r}")


def _guarded_connect(self, address):
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check_address(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback_host(host):
        raise NonLoopbackNetworkError(f"test resolved a non-loopback name {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Fail any test that resolves or connects to anything but 127.0.0.1 / ::1 / localhost."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield


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
