"""Properties of the deadline, searched with hypothesis.

Invariants (each test's name says which):
- whatever the deadline, the upstream's pace and the faults before it, a call ends (a reply or a
  ProviderError) by its deadline plus a small margin, never later;
- the upstream is attempted at most ``max_attempts`` times;
- no back-off wait is ever started that would end past the deadline;
- only a passed deadline makes the call's error a ProviderTimeoutError (a fault that ends the call earlier keeps
  its own class).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import (
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    get_llm_provider,
)
from providers.deadline import Deadline, current
from providers.retry import _wait_or_give_up, aretry_call, retry_call

MARGIN = 1.0  # network calls: scheduling on a loaded 2-core machine
LOCAL_MARGIN = 0.25  # in-process calls


# ------------------------------------------------------------------ in-process: the retry loop itself
#: One attempt's behaviour: fail at once (retryable or not, with or without Retry-After), or wait forever in
#: small steps the way a trickled socket read does (each step clipped to the deadline).
attempts_st = st.lists(
    st.sampled_from(["unavailable", "rate_limited", "rate_limited_ra", "invalid", "trickle", "ok"]),
    min_size=1, max_size=6,
)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 5),
    base_delay_s=st.floats(0, 0.1),
    max_delay_s=st.floats(0, 0.2),
    budget_s=st.floats(0.01, 2),
    max_retry_after_s=st.floats(0, 1),
)


def _script(plan: list[str], tries: list[int]):
    def attempt() -> str:
        tries.append(1)
        kind = plan[min(len(tries), len(plan)) - 1]
        if kind == "ok":
            return "reply"
        if kind == "unavailable":
            raise ProviderUnavailableError("down", provider="t")
        if kind == "rate_limited":
            raise RateLimitError("slow down", provider="t")
        if kind == "rate_limited_ra":
            raise RateLimitError("slow down", provider="t", retry_after=0.15)
        if kind == "invalid":
            raise InvalidRequestError("bad", provider="t")
        deadline = current()
        assert deadline is not None, "an attempt must run inside its call's deadline scope"
        while True:  # a trickle: each wait is clipped to what is left, as the HTTP transport does
            time.sleep(deadline.clip(0.02))

    return attempt


def _classify(exc: BaseException) -> ProviderError:
    if isinstance(exc, TimeoutError):
        return ProviderTimeoutError("timed out", provider="t")
    raise AssertionError(f"unexpected {exc!r}")


@settings(max_examples=60, deadline=None)
@given(plan=attempts_st, policy=policies, timeout=st.floats(0.02, 0.3))
def test_sync_retry_loop_ends_by_the_deadline_within_max_attempts(plan, policy, timeout):
    tries: list[int] = []
    t0 = time.monotonic()
    try:
        result = retry_call(_script(plan, tries), _classify, policy, deadline=Deadline(timeout))
    except ProviderError as exc:
        result = exc
    elapsed = time.monotonic() - t0
    assert elapsed <= timeout + LOCAL_MARGIN
    assert 1 <= len(tries) <= policy.max_attempts
    if isinstance(result, ProviderError):
        assert result.attempts == len(tries)
        if isinstance(result, ProviderTimeoutError):
            assert "deadline" in result.message and elapsed >= timeout * 0.9
    else:
        assert result == "reply"


@settings(max_examples=40, deadline=None)
@given(plan=attempts_st, policy=policies, timeout=st.floats(0.02, 0.3))
def test_async_retry_loop_ends_by_the_deadline_within_max_attempts(plan, policy, timeout):
    tries: list[int] = []

    async def attempt() -> str:
        kind = plan[min(len(tries) + 1, len(plan)) - 1]
        if kind == "trickle":
            tries.append(1)
            while True:  # never clipped here: asyncio.timeout must cancel it
                await asyncio.sleep(0.02)
        return _script(plan, tries)()

    async def main():
        try:
            return await aretry_call(attempt, _classify, policy, deadline=Deadline(timeout))
        except ProviderError as exc:
            return exc

    t0 = time.monotonic()
    result = asyncio.run(main())
    elapsed = time.monotonic() - t0
    assert elapsed <= timeout + LOCAL_MARGIN
    assert 1 <= len(tries) <= policy.max_attempts
    if isinstance(result, ProviderError):
        assert result.attempts == len(tries)
    else:
        assert result == "reply"


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    attempt=st.integers(1, 6),
    retry_after=st.none() | st.floats(0, 5),
    left=st.floats(0.002, 3),
)
def test_no_back_off_is_started_that_would_end_past_the_deadline(policy, attempt, retry_after, left):
    error = RateLimitError("slow down", provider="t", retry_after=retry_after)
    deadline = Deadline(left)
    try:
        wait = _wait_or_give_up(error, attempt, time.monotonic(), policy, deadline)
    except ProviderError as exc:
        assert exc is error and exc.attempts == attempt
        return
    assert 0 <= wait < deadline.remaining() + 1e-3
    assert attempt < policy.max_attempts


# ------------------------------------------------------------------ through LiteLLM and the fake server
FAULTS = ["error-500", "error-429-noretry", "error-503", "reset", "cut-stream", "ok"]
CALLS = ("chat", "stream_chat", "achat", "astream_chat")


def _run(llm, call: str) -> str:
    if call == "chat":
        return llm.chat("hi there").text
    if call == "achat":
        return asyncio.run(llm.achat("hi there")).text
    if call == "stream_chat":
        stream = llm.stream_chat("hi there")
        "".join(stream)
        return stream.reply.text

    async def consume():
        stream = llm.astream_chat("hi there")
        async for _ in stream:
            pass
        return stream.reply.text

    return asyncio.run(consume())


@pytest.fixture(scope="module")
def warm(_fake_llm_server):
    llm = get_llm_provider("litellm", api_base=_fake_llm_server.openai_base, api_key="sk-warm-000000", timeout=10)
    for call in CALLS:
        _run(llm, call)
    return _fake_llm_server


@pytest.mark.slow
@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    timeout=st.floats(0.2, 1.5),
    pace=st.sampled_from(["drip-0.05", "drip-0.2", "drip-0.5", "endless-0.05", "endless-0.3", "hang-3", "ok"]),
    faults=st.lists(st.sampled_from(FAULTS), max_size=3),
    call=st.sampled_from(CALLS),
)
def test_a_call_through_litellm_ends_by_its_deadline_within_max_attempts(warm, timeout, pace, faults, call):
    srv = warm
    srv.reset()
    srv.script(*faults)
    llm = get_llm_provider("litellm", model_default=f"openai/{pace}", api_base=srv.openai_base,
                           api_key="sk-test-key-123456", timeout=timeout,
                           retry=RetryPolicy(max_attempts=3, base_delay_s=0.02, max_delay_s=0.1))
    t0 = time.monotonic()
    try:
        outcome: object = _run(llm, call)
    except ProviderError as exc:
        outcome = exc
    elapsed = time.monotonic() - t0
    hits = srv.hits("/v1/chat/completions")
    assert elapsed <= timeout + MARGIN, f"{elapsed:.2f}s for a {timeout:.2f}s deadline"
    assert 1 <= hits <= 3
    if isinstance(outcome, ProviderError):
        assert outcome.attempts is not None and outcome.attempts <= 3
        if isinstance(outcome, ProviderTimeoutError):
            assert f"within the {timeout:g}s deadline" in str(outcome)
    else:
        assert outcome == "echo: hi there"
        assert pace == "ok" or faults and "ok" in faults


# ------------------------------------------------------------------ the option's input surface
@settings(max_examples=300, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**6, 10**6))
def test_a_timeout_is_accepted_exactly_when_finite_positive_and_at_most_an_hour(value):
    from providers.deadline import MAX_TIMEOUT_S
    from providers.request import check_options

    valid = value == value and abs(value) != float("inf") and 0 < value <= MAX_TIMEOUT_S
    try:
        out = check_options({"timeout": value})
    except InvalidRequestError as exc:
        assert not valid and "option 'timeout'" in str(exc) and "deadline" in str(exc)
    else:
        assert valid and out == {"timeout": value}


@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=5) | st.booleans() | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
def test_a_timeout_that_is_not_a_number_is_refused_naming_the_option(value):
    from providers.request import check_options

    with pytest.raises(InvalidRequestError, match="option 'timeout'"):
        check_options({"timeout": value})
