"""Fixtures of the security suite: a canary server nothing may reach, a socket recorder, key cleanup."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from security_helpers import Canary


@pytest.fixture(scope="session")
def canary() -> Iterator[Canary]:
    srv = Canary()
    yield srv
    srv.close()


@pytest.fixture
def sockets(monkeypatch) -> list[tuple[str, object]]:
    """Every name resolution and connect attempted during the test, recorded on top of the network guard
    (which still refuses anything but loopback)."""
    calls: list[tuple[str, object]] = []
    guarded_connect, guarded_connect_ex, guarded_getaddrinfo = (
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            calls.append(("connect", address))
        return guarded_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            calls.append(("connect", address))
        return guarded_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        calls.append(("resolve", host))
        return guarded_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


@pytest.fixture(scope="session")
def litellm_loaded():
    from providers.litellm_provider import load_litellm

    return load_litellm()
