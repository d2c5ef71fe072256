"""The one retry loop: exponential back-off with jitter, ``Retry-After`` honoured, bounded attempts and time.

The provider turns the SDK's own retries off (``max_retries=0``) and retries here, so a call is attempted
at most ``max_attempts`` times in total — never N x M. Only errors whose mapped class is ``retryable``
(rate limits, 5xx, timeouts, connection errors) are retried; 400/401/403/404 never are.

Time has two limits, and the earlier one wins:

- the call's **deadline** (``timeout``, see :mod:`providers.deadline`) is hard: every attempt runs inside
  what is left of it (sync: under :func:`providers.deadline.scope`; async: ``asyncio.timeout``), no back-off
  is started that would end past it, and when it passes the call ends in :class:`ProviderTimeoutError`;
- ``RetryPolicy.budget_s`` is soft and only about retrying: no retry is *started* whose wait would end more
  than ``budget_s`` after the first attempt began. It never interrupts an attempt.

Jitter comes from ``random.SystemRandom`` (the OS's entropy, no state in the process), so containers restored
from one memory snapshot, or forked workers, never back off in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from providers import telemetry
from providers.deadline import Deadline, enter, leave
from providers.errors import ProviderError, ProviderTimeoutError

__all__ = ["RetryPolicy", "retry_call", "aretry_call", "deadline_error", "until"]

log = logging.getLogger("providers.retry")
T = TypeVar("T")

#: Back-off jitter source. ``SystemRandom`` has no in-process state: a module-level ``random.Random`` (or the
#: global ``random``) seeded before a Modal memory snapshot would give every restored container the same jitter.
_JITTER = random.SystemRandom()

#: ``on_deadline(last_error, attempts) -> error to raise`` when the deadline ends the call.
OnDeadline = Callable[[ProviderError, int], ProviderError]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts the first try. ``budget_s`` bounds retrying: no retry is started whose wait would
    end more than ``budget_s`` after the first attempt began (the call's ``timeout`` deadline is the hard limit;
    the earlier of the two wins). A ``Retry-After`` above ``max_retry_after_s`` is not waited for: the error is
    raised at once with its ``retry_after``, so the caller can decide."""

    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    budget_s: float = 120.0
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (max_retries=0 means one attempt)")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.budget_s <= 0:
            raise ValueError("retry delays must be >= 0 and the budget > 0")

    def wait_before(self, attempt: int, error: ProviderError, elapsed_s: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up now."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after_s:
                return None
            wait = float(retry_after)
        else:
            ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
            wait = _JITTER.uniform(ceiling / 2, ceiling)  # "equal jitter": spread out, never zero
        if elapsed_s + wait > self.budget_s:
            return None
        return wait


def _give_up(error: ProviderError, attempts: int, why: str = "") -> ProviderError:
    error.attempts = attempts
    if attempts > 1 or why:
        plural = "s" if attempts != 1 else ""
        error.message = f"{error.message} (gave up after {attempts} attempt{plural}{why})"
        error.args = (error.message,)
    return error


def deadline_error(error: ProviderError, attempts: int, deadline: Deadline) -> ProviderError:
    """The default error for a call its deadline ended: says the deadline, what it covers, and the fix."""
    plural = "s" if attempts != 1 else ""
    return ProviderTimeoutError(
        f"The call did not finish within its {deadline.timeout_s:g}s deadline ({attempts} attempt{plural}; "
        f"timeout= covers the whole call, retries and stream included). Last error: {error.message} "
        "Raise timeout= (or the request's timeout option) if the model needs longer.",
        provider=error.provider, model=error.model, attempts=attempts,
    )


def _end(error: ProviderError, attempts: int, deadline: Deadline, on_deadline: OnDeadline | None) -> ProviderError:
    out = (on_deadline or (lambda e, n: deadline_error(e, n, deadline)))(error, attempts)
    out.attempts = attempts
    return out


def _wait_or_give_up(
    error: ProviderError, attempt: int, start: float, policy: RetryPolicy,
    deadline: Deadline | None = None, on_deadline: OnDeadline | None = None,
) -> float:
    """Seconds to wait before the next attempt, or raise the final error.

    Called *outside* the ``except`` block on purpose: raising inside it would chain the upstream exception
    (whose text may quote a key) as ``__context__``, where error trackers would still find it."""
    if deadline is not None and deadline.expired:
        raise _end(error, attempt, deadline, on_deadline) from None
    wait = policy.wait_before(attempt, error, time.monotonic() - start)
    if wait is None:
        raise _give_up(error, attempt) from None
    if deadline is not None and wait >= deadline.remaining():
        why = f": the next retry would start after the {deadline.timeout_s:g}s deadline"
        raise _give_up(error, attempt, why) from None
    log.info("attempt %d/%d failed (%s); retrying in %.2fs", attempt, policy.max_attempts, error.kind, wait)
    telemetry.note_retry(attempt, error, wait)
    return wait


def retry_call(
    fn: Callable[[], T],
    classify: Callable[[BaseException], ProviderError],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
    on_deadline: OnDeadline | None = None,
) -> T:
    """Call ``fn`` until it succeeds or ``policy`` gives up; raise the classified error (secret-free).

    With a ``deadline``, each attempt runs under :func:`providers.deadline.scope` (the HTTP transport clips its
    socket waits to it) and the call ends in ``on_deadline(last_error, attempts)`` once it has passed."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            if deadline is None:
                return fn()
            token = enter(deadline)  # what scope(deadline) does, without a generator per attempt (hot path)
            try:
                return fn()
            finally:
                leave(token)
        except Exception as exc:  # noqa: BLE001 - classify() decides what each exception means
            error = exc if isinstance(exc, ProviderError) else classify(exc)
        sleep(_wait_or_give_up(error, attempt, start, policy, deadline, on_deadline))


async def aretry_call(
    fn: Callable[[], Awaitable[T]],
    classify: Callable[[BaseException], ProviderError],
    policy: RetryPolicy,
    *,
    deadline: Deadline | None = None,
    on_deadline: OnDeadline | None = None,
) -> T:
    """Async twin of :func:`retry_call`; each attempt runs under ``asyncio.timeout`` for what is left."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            if deadline is None:
                return await fn()
            async with until(deadline):
                return await fn()
        except Exception as exc:  # noqa: BLE001
            error = exc if isinstance(exc, ProviderError) else classify(exc)
        await asyncio.sleep(_wait_or_give_up(error, attempt, start, policy, deadline, on_deadline))


def until(deadline: Deadline) -> asyncio.Timeout:
    """``asyncio.timeout`` ending at ``deadline`` (both use the monotonic clock)."""
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + deadline.remaining())
