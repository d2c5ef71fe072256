"""One deadline per call: ``timeout`` bounds the WHOLE call, not each read.

A :class:`Deadline` is made when a call starts (``chat``, or ``stream_chat`` being called) from the provider's
``timeout=`` or the request's ``timeout`` option. Everything after it takes only what is left: each retry
attempt, each back-off sleep (a wait that would end past the deadline is not started), each stream chunk.

How the time limit is enforced where the waiting happens:

- async calls: ``asyncio.timeout`` around every attempt and every stream chunk (cancellation interrupts the
  read at once);
- sync calls: :func:`scope` publishes the deadline in a context variable while the call's own code runs, and
  the HTTP transport installed by :mod:`providers.deadline_http` clips every socket connect/read/write to what
  is left, so a server that trickles one byte at a time cannot hold the call past it (a per-read timeout
  alone would restart on every byte).

The scope is set around each step and reset before control returns to the caller (never held across a
stream's ``yield``), so a caller's own HTTP calls between chunks are never clipped by a deadline that is not
theirs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = ["Deadline", "MAX_TIMEOUT_S", "check_timeout", "current", "enter", "leave", "scope"]

#: Upper bound of any ``timeout``: one hour. A longer call is almost surely a mistake (and outlives every
#: serverless function limit it would run under).
MAX_TIMEOUT_S = 3600.0

#: Below this much time left, a deadline counts as passed: no socket wait is started that short.
EPSILON_S = 0.001

_current: ContextVar[Deadline | None] = ContextVar("providers_deadline", default=None)


def check_timeout(value: object, what: str = "timeout") -> float:
    """A valid timeout in seconds: a real number, finite, > 0 and at most :data:`MAX_TIMEOUT_S`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int past float's range (10**400): as out of range as inf
        value = math.inf if value > 0 else -math.inf
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT_S:
        raise ValueError(
            f"{what} must be a finite number of seconds > 0 and <= {MAX_TIMEOUT_S:g} (it is a deadline for the "
            f"whole call, retries and stream included), got {value!r}"
        )
    return value


class Deadline:
    """``timeout_s`` from now, on the monotonic clock."""

    __slots__ = ("timeout_s", "at")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = float(timeout_s)
        self.at = time.monotonic() + self.timeout_s

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.at - time.monotonic() <= EPSILON_S

    def clip(self, timeout: float | None) -> float:
        """``timeout`` shortened to the time left; raises :class:`TimeoutError` once the deadline has passed."""
        left = self.at - time.monotonic()
        if left <= EPSILON_S:
            raise TimeoutError(f"the {self.timeout_s:g}s deadline has passed")
        return left if timeout is None or timeout > left else timeout

    def __repr__(self) -> str:
        return f"Deadline({self.timeout_s:g}s, {self.remaining():.3f}s left)"


def current() -> Deadline | None:
    """The deadline of the call running in this context, if any."""
    return _current.get()


def enter(deadline: Deadline) -> Token:
    """Make ``deadline`` current until :func:`leave` (the cheap form of :func:`scope`, for per-chunk loops)."""
    return _current.set(deadline)


def leave(token: Token) -> None:
    _current.reset(token)


@contextmanager
def scope(deadline: Deadline | None) -> Iterator[None]:
    """Make ``deadline`` the current one for the duration of the block (``None``: leave things as they are)."""
    if deadline is None:
        yield
        return
    token = _current.set(deadline)
    try:
        yield
    finally:
        _current.reset(token)
