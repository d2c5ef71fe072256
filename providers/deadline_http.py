"""The sync half of deadlines: an httpx transport whose every socket wait ends by the current call's deadline.

httpx's timeouts are per operation: a read that receives one byte restarts the clock, so a server trickling a
byte every half second holds a ``timeout=1`` call for as long as it likes. A blocked sync read cannot be
cancelled from outside either. So the waits themselves are bounded: this transport's network streams clip
each connect, read and write to the time left on :func:`providers.deadline.current` (and raise httpcore's own
timeout once it has passed), which httpx, the OpenAI SDK and LiteLLM then report as an ordinary timeout.
Without a current deadline (any other caller in the process) it behaves exactly like ``httpx.HTTPTransport``.

:func:`install` hands it to LiteLLM through the two hooks LiteLLM reads for sync HTTP: ``litellm.client_session``
(the httpx client of every OpenAI-SDK-based provider) and ``litellm.sync_transport`` (LiteLLM's own HTTP
handler: Ollama, Anthropic, ...). Both are set once, when litellm is first loaded, and only when the host has
not set its own; async calls do not need it (``asyncio.timeout`` cancels the read).

Not covered (sync only; each read is still bounded by the timeout, and streams are checked between chunks):
a host that sets its own ``litellm.client_session``/``sync_transport`` (logged once), ``litellm.force_ipv4``,
and requests routed through an ``HTTP(S)_PROXY`` from the environment (httpx mounts its own transport there).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpcore
import httpx

from providers.deadline import current

__all__ = ["DeadlineTransport", "install"]

log = logging.getLogger("providers.deadline")


def _clip(timeout: float | None, exc: type[Exception]) -> float | None:
    deadline = current()
    if deadline is None:
        return timeout
    try:
        return deadline.clip(timeout)
    except TimeoutError as e:
        raise exc(str(e)) from None


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose waits end by the current deadline."""

    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clip(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clip(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _clip(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _clip(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _clip(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` (same arguments) whose connections' waits end by the current call's deadline."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = self._pool
        # httpx builds its pool without a network_backend argument; every connection the pool opens from now on
        # takes this attribute (httpcore 1.x), and tests/test_deadlines.py fails if that ever stops being so.
        pool._network_backend = _DeadlineBackend(pool._network_backend)


def install(litellm: Any) -> bool:
    """Route LiteLLM's sync HTTP through a :class:`DeadlineTransport`. Returns False (and logs why) when the host
    already set its own ``client_session``/``sync_transport``: then a sync read is bounded per read only."""
    from litellm.llms.custom_httpx.http_handler import get_ssl_configuration, http2_enabled

    ours = True
    transport = getattr(litellm, "sync_transport", None)
    if transport is None:
        http2 = http2_enabled()
        transport = litellm.sync_transport = DeadlineTransport(verify=get_ssl_configuration(http2=http2), http2=http2)
    elif not isinstance(transport, DeadlineTransport):
        ours = False
    if litellm.client_session is None:
        litellm.client_session = httpx.Client(transport=transport, follow_redirects=True)
    elif not isinstance(getattr(litellm.client_session, "_transport", None), DeadlineTransport):
        ours = False
    if not ours:
        log.warning("litellm.client_session or litellm.sync_transport was set by the host: sync calls are bounded "
                    "per read, not by their whole-call deadline")
    return ours
