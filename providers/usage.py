"""The usage dict every reply carries, and the one place money is rounded.

``usage`` has exactly four keys:

- ``tokens_in``: input (prompt) tokens, as the provider reported them.
- ``tokens_out``: output (completion) tokens, as the provider reported them.
- ``latency_ms``: wall time of the provider call as the caller sees it, retries and back-off included.
- ``usd_micros``: cost in integer micro-USD, rounded half-up; ``0`` for mock and local models; ``None`` when the
  price is unknown (never a made-up 0).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import TypedDict

__all__ = ["USAGE_KEYS", "Usage", "make_usage", "to_micro_usd", "validate_usage"]

USAGE_KEYS: tuple[str, ...] = ("tokens_in", "tokens_out", "latency_ms", "usd_micros")

_MICRO = Decimal(1_000_000)
_FAST_BELOW = float(2**30)  # micro-USD (about 1,074 USD): where the float shortcut of to_micro_usd is exact
_NEAR_HALF = 2.0**-20  # products this close to a half go the exact Decimal way
_ONE = Decimal(1)


class Usage(TypedDict):
    tokens_in: int
    tokens_out: int
    latency_ms: int
    usd_micros: int | None


def to_micro_usd(cost_usd: float | None) -> int | None:
    """USD float -> integer micro-USD, half-up (``round()`` would do banker's rounding: 2.5e-07 -> 0)."""
    if cost_usd is None:
        return None
    f = float(cost_usd)
    if not math.isfinite(f):  # an upstream reporting absurd usage makes the price overflow: unknown, not a crash
        return None
    x = f * 1e6
    if 0.0 <= x < _FAST_BELOW:
        # Below 2**30 micro-USD the float product is within 2**-22 of the exact decimal one, so unless it lies
        # that close to a half, rounding it gives the Decimal answer (a per-call cost, without Decimal's ~3 us).
        floor = math.floor(x)
        if abs(x - floor - 0.5) > _NEAR_HALF:
            return floor + 1 if x - floor > 0.5 else floor
    # to_integral_value, not quantize: quantize raises InvalidOperation past 28 digits (e.g. 1e22 USD).
    return int((Decimal(repr(f)) * _MICRO).to_integral_value(rounding=ROUND_HALF_UP))


def make_usage(tokens_in: int, tokens_out: int, latency_ms: int, usd_micros: int | None) -> Usage:
    return {
        "tokens_in": int(tokens_in),
        "tokens_out": int(tokens_out),
        "latency_ms": int(latency_ms),
        "usd_micros": None if usd_micros is None else int(usd_micros),
    }


def validate_usage(usage: object) -> Usage:
    """Check a usage mapping that crossed a boundary (JSON, Modal); raise ValueError naming the bad key."""
    if not isinstance(usage, dict):
        raise ValueError(f"usage must be a dict with keys {', '.join(USAGE_KEYS)}; got {type(usage).__name__}")
    keys = set(usage)
    if keys != set(USAGE_KEYS):
        missing = sorted(set(USAGE_KEYS) - keys)
        extra = sorted(keys - set(USAGE_KEYS))
        raise ValueError(f"usage keys must be exactly {', '.join(USAGE_KEYS)} (missing: {missing}, unexpected: {extra})")
    for key in USAGE_KEYS:
        value = usage[key]
        if value is None and key == "usd_micros":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"usage[{key!r}] must be a non-negative int, got {value!r}")
    return usage  # type: ignore[return-value]
