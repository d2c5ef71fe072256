"""The shortcuts the plain-text hot path takes, each checked against the long way on the same inputs.

- ``to_micro_usd``: the float shortcut vs exact ``Decimal`` rounding;
- ``build_request``: the plain-request lane vs the full checks (forced by ``history=[]``, which normalises to
  the same request);
- the re-ask loop's plain lane: a request without schema or tools can never fail validation;
- ``LiteLLMProvider``'s remembered targets: same target or the same error as computing it afresh, and a change
  of ``api_base``, key or Ollama environment is seen at once;
- ``retry_call``: the deadline is current during each attempt and reset after it, however it ends.
(The lane that skips the fallback chain has its own differential suite: tests/differential/test_plain_lane_differential.py.)
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import deadline as deadline_mod
from providers import get_llm_provider
from providers.base import build_request
from providers.errors import InvalidRequestError, ProviderError
from providers.retry import RetryPolicy, retry_call
from providers.structured import Turn, build_reply
from providers.usage import make_usage, to_micro_usd


def exact_micro_usd(cost: float | None) -> int | None:
    """The reference: what to_micro_usd computed before the shortcut (Decimal of the shortest repr, half-up)."""
    if cost is None:
        return None
    f = float(cost)
    if not math.isfinite(f):
        return None
    return int((Decimal(repr(f)) * Decimal(1_000_000)).to_integral_value(rounding=ROUND_HALF_UP))


# ------------------------------------------------------------------------------------------ money
halves = st.builds(lambda n, e: (n + 0.5) / 10**e / 1e6 * 10**e, st.integers(0, 10**9), st.integers(0, 3))


@settings(max_examples=3000, deadline=None)
@given(cost=st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 2e3),
    st.floats(0, 1e-3),
    halves,  # products at or next to an exact half: the cases the shortcut must hand to Decimal
    st.builds(lambda m: m / 1e6, st.integers(0, 2**31)),
    st.builds(lambda m, d: (m + 0.5) / 1e6 + d, st.integers(0, 2**20), st.floats(-1e-12, 1e-12)),
    st.none(),
))
def test_the_micro_usd_shortcut_rounds_exactly_as_decimal(cost):
    """Invariant: for every float (huge, tiny, negative, non-finite, at or near a half micro-USD), the result
    equals exact half-up rounding of its decimal value."""
    assert to_micro_usd(cost) == exact_micro_usd(cost)


@pytest.mark.parametrize("cost", [5e-07, 2.5e-06, 1.5e-06, 0.0000035, 1073.7418235, 1073.741824, 1073.7418245])
def test_exact_halves_and_the_shortcut_boundary(cost):
    assert to_micro_usd(cost) == exact_micro_usd(cost)


# ------------------------------------------------------------------------------------------ requests
def outcome(fn):
    try:
        return ("ok", fn())
    except InvalidRequestError as exc:
        return ("error", str(exc))


options = st.fixed_dictionaries({}, optional={
    "temperature": st.one_of(st.floats(-1, 3), st.sampled_from([float("nan"), "x", None, True])),
    "max_tokens": st.one_of(st.integers(-1, 10), st.just(1.5)),
    "system": st.one_of(st.text(max_size=10), st.integers()),
    "stop": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=5)),
    "timeout": st.one_of(st.floats(-1, 4000), st.just("1")),
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "nope"}, "x"]),
    "unknown_option": st.just(1),
})


@settings(max_examples=400, deadline=None)
@given(prompt=st.one_of(st.text(max_size=20), st.sampled_from(["", " ", None, 3])),
       model=st.one_of(st.none(), st.sampled_from(["openai/gpt-4o", "bad model", "http://x/y", "mock", ""])),
       opts=st.one_of(st.none(), options), retries=st.sampled_from([1, True, 1.0]))
def test_the_plain_request_lane_builds_what_the_full_checks_build(prompt, model, opts, retries):
    """Invariant: for any prompt, model, options and ``output_retries``, the plain lane returns an equal
    ``ChatRequest`` (or raises the same error) as the full checks, which ``history=[]`` forces."""
    plain = outcome(lambda: build_request(prompt, model=model, default_model="openai/gpt-4o-mini",
                                          options=opts, output_retries=retries))
    full = outcome(lambda: build_request(prompt, model=model, default_model="openai/gpt-4o-mini",
                                         options=opts, output_retries=retries, history=[]))
    assert plain == full


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=50), finish=st.sampled_from([None, "stop", "length", "tool_calls", "content_filter"]),
       calls=st.lists(st.fixed_dictionaries({"id": st.text(max_size=4), "name": st.text(max_size=4),
                                             "arguments": st.text(max_size=10)}), max_size=2))
def test_a_plain_request_never_fails_validation(text, finish, calls):
    """What the re-ask loop's plain lane relies on: without ``output_schema`` or ``tools`` any turn is a reply
    (never a re-ask), whatever its text, finish reason or unasked-for tool calls."""
    req = build_request("hi", model=None, default_model="openai/gpt-4o-mini")
    reply = build_reply(req, "litellm", Turn(text, make_usage(1, 2, 3, 4), finish, calls))
    assert reply.text == text and reply.tool_calls is None and reply.data is None
    assert reply.finish_reason == ("stop" if finish in (None, "tool_calls") else finish)


# ------------------------------------------------------------------------------------------ targets
def target_outcome(llm, model):
    try:
        return ("ok", llm._checked_target(model))
    except ProviderError as exc:
        return ("error", type(exc).__name__, exc.message)


def fresh_outcome(llm, model):
    try:
        t = llm._target(model)
        llm._check_provider(t)
        return ("ok", t)
    except ProviderError as exc:
        return ("error", type(exc).__name__, exc.message)


@settings(max_examples=100, deadline=None)
@given(models=st.lists(st.sampled_from(["openai/gpt-4o", "gpt-4o-mini", "nosuch/x", "anthropic/claude-3-5-haiku",
                                        "ollama_chat/qwen2.5:0.5b", "hosted_vllm/m", "claude-3-haiku-20240307"]),
                       min_size=1, max_size=6))
def test_remembered_targets_equal_fresh_ones(models):
    """Invariant: in any order, repeated (cache hits), a remembered target is the one computed afresh, and a
    refused model is refused again with the same message (refusals are never remembered)."""
    llm = get_llm_provider("litellm", api_base="http://127.0.0.1:9/v1", api_key="sk-targets-0000000000")
    for m in models + models:
        assert target_outcome(llm, m) == fresh_outcome(llm, m)


def test_a_changed_base_or_key_or_ollama_env_is_seen_at_once(monkeypatch):
    llm = get_llm_provider("litellm", api_base="http://127.0.0.1:9/v1", api_key="sk-targets-0000000000")
    assert llm._checked_target("openai/gpt-4o").api_base == "http://127.0.0.1:9/v1"
    llm.api_base = "http://127.0.0.1:10/v1"
    assert llm._checked_target("openai/gpt-4o").api_base == "http://127.0.0.1:10/v1"
    llm._api_key = "sk-other-00000000000000"
    assert llm._checked_target("openai/gpt-4o").api_key == "sk-other-00000000000000"
    bare = get_llm_provider("litellm")
    monkeypatch.setenv("LLM_API_BASE", "http://127.0.0.1:11/")
    first = bare._checked_target("ollama_chat/qwen2.5:0.5b").api_base
    monkeypatch.setenv("LLM_API_BASE", "http://127.0.0.1:12/")
    second = bare._checked_target("ollama_chat/qwen2.5:0.5b").api_base
    assert first != second and "12" in second


def test_remembered_targets_are_bounded(monkeypatch):
    from providers import litellm_provider

    monkeypatch.setattr(litellm_provider, "_TARGET_CACHE_SIZE", 3)
    llm = get_llm_provider("litellm", api_key="sk-targets-0000000000")
    for i in range(10):
        llm._checked_target(f"openai/model-{i}")
        assert len(llm._targets) <= 3


# ------------------------------------------------------------------------------------------ deadline scope
@settings(max_examples=60, deadline=None)
@given(outcomes=st.lists(st.sampled_from(["ok", "retryable", "final", "crash"]), min_size=1, max_size=4))
def test_the_deadline_is_current_in_every_attempt_and_reset_after(outcomes):
    """Invariant: whatever each attempt does (succeed, fail and be retried, fail for good, raise something
    unexpected), the call's deadline is the current one inside it and no deadline is current afterwards."""
    from providers.errors import ProviderUnavailableError

    dl = deadline_mod.Deadline(30)
    seen = []
    script = iter(outcomes)

    def fn():
        seen.append(deadline_mod.current())
        what = next(script, "ok")
        if what == "retryable":
            raise ProviderUnavailableError("down", provider="t")
        if what == "final":
            raise InvalidRequestError("bad", provider="t")
        if what == "crash":
            raise KeyError("x")
        return "done"

    def classify(exc):
        return ProviderError(f"classified {type(exc).__name__}", provider="t")

    assert deadline_mod.current() is None
    try:
        retry_call(fn, classify, RetryPolicy(max_attempts=3, base_delay_s=0, max_delay_s=0), sleep=lambda s: None,
                   deadline=dl)
    except ProviderError:
        pass
    assert seen and all(d is dl for d in seen)
    assert deadline_mod.current() is None
