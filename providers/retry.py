"""The one retry loop: exponential back-off with jitter, ``Retry-After`` honoured, bounded attempts and time.

The provider turns the SDK's own retries off (``max_retries=0``) and retries here, so a call is attempted
at most ``max_attempts`` times in total — never N x M. Only errors whose mapped class is ``retryable``
(rate limits, 5xx, timeouts, connection errors) are retried; 400/401/403/404 never are.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from providers.errors import ProviderError

__all__ = ["RetryPolicy", "retry_call", "aretry_call"]

log = logging.getLogger("providers.retry")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts the first try. ``budget_s`` bounds the whole call: no retry is started whose
    wait would end past it. A ``Retry-After`` above ``max_retry_after_s`` is not waited for: the error is
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
            wait = random.uniform(ceiling / 2, ceiling)  # "equal jitter": spread out, never zero
        if elapsed_s + wait > self.budget_s:
            return None
        return wait


def _give_up(error: ProviderError, attempts: int) -> ProviderError:
    error.attempts = attempts
    if attempts > 1:
        error.message = f"{error.message} (gave up after {attempts} attempts)"
        error.args = (error.message,)
    return error


def _wait_or_give_up(error: ProviderError, attempt: int, start: float, policy: RetryPolicy) -> float:
    """Seconds to wait before the next attempt, or raise the final error.

    Called *outside* the ``except`` block on purpose: raising inside it would chain the upstream exception
    (whose text may quote a key) as ``__context__``, where error trackers would still find it."""
    wait = policy.wait_before(attempt, error, time.monotonic() - start)
    if wait is None:
        raise _give_up(error, attempt) from None
    log.info("attempt %d/%d failed (%s); retrying in %.2fs", attempt, policy.max_attempts, error.kind, wait)
    return wait


def retry_call(
    fn: Callable[[], T],
    classify: Callable[[BaseException], ProviderError],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds or ``policy`` gives up; raise the classified error (secret-free)."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classify() decides what each exception means
            error = exc if isinstance(exc, ProviderError) else classify(exc)
        sleep(_wait_or_give_up(error, attempt, start, policy))


async def aretry_call(
    fn: Callable[[], Awaitable[T]],
    classify: Callable[[BaseException], ProviderError],
    policy: RetryPolicy,
) -> T:
    """Async twin of :func:`retry_call`."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:  # noqa: BLE001
            error = exc if isinstance(exc, ProviderError) else classify(exc)
        await asyncio.sleep(_wait_or_give_up(error, attempt, start, policy))
