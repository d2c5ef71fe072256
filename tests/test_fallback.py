"""Model fallbacks (providers.fallback): against the loopback fake server, and searched with hypothesis.

The fake server answers by model name (``openai/error-500`` -> HTTP 500, ``openai/ctx-overflow`` -> context
window exceeded, ...), so a chain of model names is a script of failures, and the server's request log says
exactly which models were asked, in which order.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import (
    ContextWindowExceededError,
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    get_llm_provider,
)
from providers.errors import error_from_dict
from providers.fallback import MAX_FALLBACKS, check_fallbacks, falls_back, model_chain
from providers.mock import MockProvider

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
KEY = "sk-test-key-123456"
CHAT = "/v1/chat/completions"


@pytest.fixture
def openai_llm(fake_llm, no_provider_keys):
    def make(model="openai/gpt-4o-mini", **kw):
        kw.setdefault("api_key", KEY)
        if "max_retries" not in kw:
            kw.setdefault("retry", FAST)
        kw.setdefault("timeout", 60)  # the chain's deadline: generous, the machine may be busy
        return get_llm_provider("litellm", model_default=model, api_base=fake_llm.openai_base, **kw)

    return make


def asked(fake_llm) -> list[str]:
    """The model of every chat request the fake server received, in order."""
    return [r["body"]["model"] for r in fake_llm.requests if r["path"] == CHAT]


# ------------------------------------------------------------------ chat
def test_first_model_5xx_after_its_retries_then_the_second_answers(openai_llm, fake_llm):
    llm = openai_llm("openai/error-500", fallbacks=["openai/gpt-4o-mini"])
    reply = llm.chat("Hello there")
    assert reply.model == "openai/gpt-4o-mini"
    assert reply.text == "mock reply to: Hello there" or "Hello there" in reply.text
    assert asked(fake_llm) == ["error-500"] * 3 + ["gpt-4o-mini"]  # its own retries first, then the next model


def test_the_callers_own_400_does_not_fall_back(openai_llm, fake_llm):
    llm = openai_llm("openai/error-400", fallbacks=["openai/gpt-4o-mini"])
    with pytest.raises(InvalidRequestError) as info:
        llm.chat("Hello")
    assert asked(fake_llm) == ["error-400"]
    assert info.value.attempted == [{"model": "openai/error-400", "kind": "invalid_request", "message": info.value.message}]


def test_all_failing_raises_the_last_error_naming_every_model_tried(openai_llm, fake_llm):
    chain = ["openai/error-500", "openai/error-404", "openai/ctx-overflow", "openai/error-401"]
    llm = openai_llm(chain[0], fallbacks=chain[1:], max_retries=0)
    with pytest.raises(CredentialsError) as info:
        llm.chat("Hello")
    err = info.value
    assert [a["model"] for a in err.attempted] == chain
    assert [a["kind"] for a in err.attempted] == ["unavailable", "model_not_found", "context_window_exceeded", "credentials"]
    for model in chain:
        assert model in str(err)
    assert asked(fake_llm) == ["error-500", "error-404", "ctx-overflow", "error-401"]
    text = str(err) + repr(err.to_dict())
    assert KEY not in text and KEY[-8:] not in text
    # ``attempted`` crosses a process boundary with the error.
    assert error_from_dict(err.to_dict()).attempted == err.attempted


def test_per_call_fallbacks_replace_the_configured_ones(openai_llm, fake_llm):
    llm = openai_llm("openai/error-500", fallbacks=["openai/error-503"], max_retries=0)
    reply = llm.chat("Hello", fallbacks=["openai/gpt-4o"])
    assert reply.model == "openai/gpt-4o"
    assert asked(fake_llm) == ["error-500", "gpt-4o"]
    with pytest.raises(ProviderUnavailableError):
        llm.chat("Hello", fallbacks=[])  # an empty list turns them off for this call


def test_a_model_is_never_tried_twice_in_one_call(openai_llm, fake_llm):
    llm = openai_llm("openai/error-500", max_retries=0)
    with pytest.raises(ProviderUnavailableError) as info:
        llm.chat("Hello", model="openai/error-502", fallbacks=["openai/error-502", "openai/error-500", "openai/error-500"])
    assert asked(fake_llm) == ["error-502", "error-500"]
    assert [a["model"] for a in info.value.attempted] == ["openai/error-502", "openai/error-500"]


def test_a_bad_fallback_model_is_refused_before_any_network(openai_llm, fake_llm):
    llm = openai_llm()
    with pytest.raises(InvalidRequestError, match=r"fallbacks\[1\]"):
        llm.chat("Hello", fallbacks=["openai/gpt-4o", "has space"])
    with pytest.raises(InvalidRequestError, match="list of model strings"):
        llm.chat("Hello", fallbacks="openai/gpt-4o")
    with pytest.raises(InvalidRequestError, match="fallbacks"):
        openai_llm(fallbacks=[""])
    assert fake_llm.hits() == 0


def test_a_missing_key_falls_back_to_a_local_model_with_no_call_to_the_first(fake_llm, no_provider_keys):
    llm = get_llm_provider("litellm", model_default="openai/gpt-4o-mini", fallbacks=["ollama_chat/qwen2.5:0.5b"],
                           api_base=fake_llm.ollama_base, retry=FAST, timeout=60)
    reply = llm.chat("Hello")
    assert reply.model == "ollama_chat/qwen2.5:0.5b"
    assert [r["path"] for r in fake_llm.requests if r["path"] in ("/api/chat", CHAT)] == ["/api/chat"]


def test_the_deadline_covers_the_whole_chain(openai_llm, fake_llm):
    llm = openai_llm("openai/hang-3", fallbacks=["openai/gpt-4o-mini"], max_retries=0, timeout=1)
    with pytest.raises(ProviderTimeoutError) as info:
        llm.chat("Hello")
    assert "gpt-4o-mini" not in asked(fake_llm)
    assert "not tried, the deadline had passed: openai/gpt-4o-mini" in str(info.value)


def test_reply_latency_covers_the_failed_models_too():
    from providers.contract import LLMReply
    from providers.fallback import Chain

    chain = Chain(["mock/a", "mock/b"])
    chain.started -= 2.0  # as if the first model had spent two seconds failing
    chain.failed(ProviderUnavailableError("down"))
    reply = chain.answered(LLMReply("hi", "mock", "mock/b", {"tokens_in": 1, "tokens_out": 1, "latency_ms": 5, "usd_micros": 0}))
    assert reply.usage["latency_ms"] >= 2000 and reply.model == "mock/b"
    untouched = Chain(["mock/a"]).answered(reply)
    assert untouched is reply


# ------------------------------------------------------------------ streams
def test_stream_falls_back_before_the_first_chunk(openai_llm, fake_llm):
    llm = openai_llm("openai/error-500", fallbacks=["openai/gpt-4o-mini"], max_retries=0)
    stream = llm.stream_chat("Hello stream")
    text = "".join(stream)
    assert stream.reply.model == "openai/gpt-4o-mini"
    assert text == stream.reply.text and "Hello stream" in text
    assert asked(fake_llm) == ["error-500", "gpt-4o-mini"]


def test_stream_never_falls_back_after_the_first_chunk(openai_llm, fake_llm):
    llm = openai_llm("openai/cut-stream", fallbacks=["openai/gpt-4o-mini"], max_retries=0)
    stream = llm.stream_chat("one two three four five six")
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        for chunk in stream:
            got.append(chunk)
    assert got, "the first chunk reached the caller before the cut"
    assert "broke off" in str(info.value)
    assert asked(fake_llm) == ["cut-stream"]


def test_async_chat_and_stream_fall_back(openai_llm, fake_llm):
    llm = openai_llm("openai/error-502", fallbacks=["openai/gpt-4o"], max_retries=0)

    async def main():
        reply = await llm.achat("Hello async")
        stream = llm.astream_chat("Hello async stream")
        text = "".join([c async for c in stream])
        return reply, text, stream.reply

    reply, text, sreply = asyncio.run(main())
    assert reply.model == "openai/gpt-4o" and sreply.model == "openai/gpt-4o"
    assert text == sreply.text
    assert asked(fake_llm) == ["error-502", "gpt-4o", "error-502", "gpt-4o"]


def test_a_stream_whose_every_model_fails_raises_with_attempted(openai_llm, fake_llm):
    llm = openai_llm("openai/error-500", fallbacks=["openai/error-404"], max_retries=0)
    with pytest.raises(ModelNotFoundError) as info:
        "".join(llm.stream_chat("Hello"))
    assert [a["model"] for a in info.value.attempted] == ["openai/error-500", "openai/error-404"]


# ------------------------------------------------------------------ units
def test_eligibility_follows_the_rules():
    assert falls_back(ProviderUnavailableError("x")) and falls_back(RateLimitError("x"))
    assert falls_back(CredentialsError("x")) and falls_back(ModelNotFoundError("x"))
    assert falls_back(ContextWindowExceededError("x")) and falls_back(ProviderTimeoutError("x"))
    assert not falls_back(InvalidRequestError("x"))
    assert not falls_back(ProviderError("no choices"))  # not retryable, not a model problem
    assert not falls_back(ValueError("a bug")) and not falls_back(KeyboardInterrupt())


def test_check_fallbacks_caps_the_chain_and_model_chain_dedupes():
    assert check_fallbacks(None) == ()
    assert check_fallbacks(("openai/gpt-4o",)) == ("openai/gpt-4o",)
    assert check_fallbacks(["mock/b"], provider="mock") == ("mock/b",)  # each provider's own model grammar
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_FALLBACKS}"):
        check_fallbacks([f"openai/m{i}" for i in range(MAX_FALLBACKS + 1)])
    assert model_chain("a", ["b", "a", "c", "b"]) == ("a", "b", "c")


# ------------------------------------------------------------------ searched: random failure sequences
OUTCOMES: dict[str, type[ProviderError] | None] = {
    "ok": None,
    "unavailable": ProviderUnavailableError,
    "rate_limited": RateLimitError,
    "timeout": ProviderTimeoutError,
    "credentials": CredentialsError,
    "model_not_found": ModelNotFoundError,
    "context_window_exceeded": ContextWindowExceededError,
    "invalid_request": InvalidRequestError,
    "provider_error": ProviderError,
}
ELIGIBLE = {"unavailable", "rate_limited", "timeout", "credentials", "model_not_found", "context_window_exceeded"}
SECRET = "sk-proj-PROPERTYsecret0123456789"


def expected_walk(models: list[str], outcomes: list[str]) -> tuple[str | None, list[str]]:
    """The reference: (the answering model or None, the models tried in order)."""
    tried = []
    for model, outcome in zip(models, outcomes):
        tried.append(model)
        if outcome == "ok":
            return model, tried
        if outcome not in ELIGIBLE:
            return None, tried
    return None, tried


chains = st.lists(st.from_regex(r"mock/[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=5, unique=True)


@settings(max_examples=150, deadline=None)
@given(chains.flatmap(lambda ms: st.tuples(st.just(ms), st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=len(ms), max_size=len(ms)))),
       st.sampled_from(["chat", "stream", "achat", "astream"]),
       st.text(alphabet=st.characters(categories=["L", "N"]), min_size=12, max_size=40))
def test_answer_is_the_first_success_after_only_eligible_failures_and_attempted_lists_exactly_the_tried(
    chain_and_outcomes, how, word
):
    """Invariant: the answering model is the first that succeeds after only eligible failures; ``attempted``
    lists exactly the models tried, in order; no error message carries the key."""
    models, outcomes = chain_and_outcomes
    prompt = f"PROMPT{word}"
    llm = MockProvider(models[0], fallbacks=models[1:])
    for outcome in outcomes:
        cls = OUTCOMES[outcome]
        llm.enqueue(f"answer {outcome}" if cls is None else cls(f"upstream failed for {prompt} with key {SECRET}"))
    want_model, want_tried = expected_walk(models, outcomes)
    try:
        reply = _call(llm, how, prompt)
    except ProviderError as exc:
        assert want_model is None
        assert type(exc) is OUTCOMES[outcomes[len(want_tried) - 1]]
        if len(models) > 1:
            assert [a["model"] for a in exc.attempted] == want_tried
            assert [a["kind"] for a in exc.attempted] == [OUTCOMES[o].kind for o in outcomes[: len(want_tried)]]
            assert all(SECRET not in a["message"] and SECRET[-10:] not in a["message"] for a in exc.attempted)
        else:
            assert exc.attempted is None
    else:
        assert reply.model == want_model
    assert [c["model"] for c in llm.calls] == want_tried


def _call(llm, how: str, prompt: str):
    if how == "chat":
        return llm.chat(prompt)
    if how == "stream":
        stream = llm.stream_chat(prompt)
        "".join(stream)
        return stream.reply
    if how == "achat":
        return asyncio.run(llm.achat(prompt))

    async def consume():
        stream = llm.astream_chat(prompt)
        async for _ in stream:
            pass
        return stream.reply

    return asyncio.run(consume())


SCENARIOS = {  # fake-server model names -> whether the chain may move on after them
    "gpt-4o-mini": None, "gpt-4o": None,
    "error-500": True, "error-503": True, "error-429-noretry": True, "error-401": True, "error-404": True,
    "ctx-overflow": True, "error-400": False, "error-422": False,
}


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(SCENARIOS)), min_size=1, max_size=4, unique=True), st.booleans())
def test_litellm_chain_against_the_fake_server_asks_exactly_the_models_the_rules_allow(
    fake_llm, no_provider_keys, names, stream
):
    """Invariant (real LiteLLM, real HTTP): the server is asked for the chain's models in order, up to and
    including the first that answers or fails ineligibly, and never for one after it."""
    fake_llm.reset()
    models = [f"openai/{n}" for n in names]
    llm = get_llm_provider("litellm", model_default=models[0], fallbacks=models[1:], api_base=fake_llm.openai_base,
                           api_key=KEY, max_retries=0, timeout=60)
    want, tried = None, []
    for n in names:
        tried.append(n)
        if SCENARIOS[n] is None:
            want = f"openai/{n}"
            break
        if not SCENARIOS[n]:
            break
    try:
        if stream:
            s = llm.stream_chat("Hello")
            "".join(s)
            got = s.reply.model
        else:
            got = llm.chat("Hello").model
    except ProviderError as exc:
        assert want is None
        if len(models) > 1:
            assert [a["model"] for a in exc.attempted] == [f"openai/{n}" for n in tried]
        assert KEY not in str(exc)
    else:
        assert got == want
    assert asked(fake_llm) == tried
