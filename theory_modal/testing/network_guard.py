"""A pytest guard that fails any test resolving or connecting to anything but loopback.

Use it in another service's suite with ``pytest_plugins = ["theory_modal.testing.network_guard"]``: the
autouse fixture patches ``socket`` for each test. Unix sockets and socketpairs are always allowed.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

__all__ = ["NonLoopbackNetworkError", "is_loopback_host", "loopback_only"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NonLoopbackNetworkError(AssertionError):
    """A test tried to reach an address other than loopback."""


def is_loopback_host(host: object) -> bool:
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
    if not is_loopback_host(host):
        raise NonLoopbackNetworkError(f"test opened a non-loopback connection to {address!r}")


def _guarded_connect(self, address):
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check_address(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not is_loopback_host(host):
        raise NonLoopbackNetworkError(f"test resolved a non-loopback name {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail any test that resolves or connects to anything but 127.0.0.1 / ::1 / localhost."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield
