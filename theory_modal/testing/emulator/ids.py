"""Object identifiers, opaque tokens and a tiny broadcast primitive shared by the emulator's modules."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
from typing import Any


class IdFactory:
    """Mints ids shaped like Modal's (``fu-...``, ``ap-...``): the client checks some prefixes.

    A random per-emulator nonce keeps ids from two emulator instances in one process distinct, which matters
    because the client caches some lookups (e.g. bound class parameters) by id.
    """

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(2)
        self._counter = itertools.count(1)

    def new(self, prefix: str) -> str:
        return f"{prefix}-emu{self._nonce}{next(self._counter):06d}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_token(payload: dict[str, Any]) -> str:
    """Encode an unsigned JWT-shaped token. The client decodes input JWTs to read their ``idx``."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload, sort_keys=True).encode())
    return f"{header}.{body}."


def decode_token(token: str) -> dict[str, Any]:
    """Decode a token made by :func:`encode_token`; raises ``ValueError`` on anything else."""
    try:
        body = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError) as exc:
        raise ValueError(f"not an emulator token: {token!r}") from exc
    if not isinstance(decoded, dict):
        raise ValueError(f"not an emulator token: {token!r}")
    return decoded


class Signal:
    """Broadcast wake-up for waiters on the event loop; ``notify()`` is synchronous (no lock to hold).

    Usage: check your condition, and if it does not hold, ``await signal.wait(timeout)`` and check again. Because
    everything runs on one event loop, no notification can slip in between the check and the wait.
    """

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def notify(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None

    async def wait(self, timeout: float) -> None:
        if timeout <= 0:
            return
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
