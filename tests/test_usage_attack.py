"""Usage arithmetic under hostile upstream numbers (an upstream reporting 10**30 tokens, NaN, inf)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from providers.usage import to_micro_usd


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**40, 10**40)))
def test_to_micro_usd_never_raises_and_is_an_int_or_unknown(cost):
    """An upstream that reports absurd usage made LiteLLM price it at inf, and ``to_micro_usd`` raised
    ``decimal.InvalidOperation`` (not a ProviderError) out of chat(): a cost that is not finite is unknown."""
    out = to_micro_usd(cost)
    assert out is None or isinstance(out, int)
    if cost is not None and math.isfinite(float(cost)) and abs(float(cost)) < 1e12:
        assert out is not None
    if cost is None or not math.isfinite(float(cost)):
        assert out is None
