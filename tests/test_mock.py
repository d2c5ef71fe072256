"""MockProvider: deterministic, free, scriptable."""

from __future__ import annotations

import asyncio

import pytest

from providers import (
    Attachment,
    ContextWindowExceededError,
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    get_llm_provider,
)
from providers.mock import MOCK_ERRORS, MockProvider

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_same_prompt_gives_same_text_and_usage_and_costs_nothing():
    llm = get_llm_provider("mock")
    a, b = llm.chat("count these four words"), MockProvider().chat("count these four words")
    assert a == b
    assert a.usage == {"tokens_in": 4, "tokens_out": 7, "latency_ms": 0, "usd_micros": 0}


def test_different_prompts_give_different_replies():
    llm = get_llm_provider("mock")
    assert llm.chat("one").text != llm.chat("two").text


def test_model_override_is_reported():
    assert get_llm_provider("mock").chat("hi", model="mock-large").model == "mock-large"


def test_enqueued_replies_come_first_in_order_then_the_default():
    llm = MockProvider().enqueue("first", "second")
    assert [llm.chat("x").text for _ in range(3)] == ["first", "second", "mock reply to: x"]


@pytest.mark.parametrize(
    "error",
    [ProviderUnavailableError, CredentialsError, ModelNotFoundError, RateLimitError, ProviderTimeoutError,
     InvalidRequestError, ContextWindowExceededError],
)
def test_enqueued_error_classes_are_raised_so_callers_can_test_their_handling(error):
    llm = MockProvider().enqueue(error, "after")
    with pytest.raises(error):
        llm.chat("x")
    assert llm.chat("x").text == "after"


def test_enqueued_error_instance_is_raised_as_is():
    boom = RateLimitError("slow down", retry_after=2.5)
    llm = MockProvider().enqueue(boom)
    with pytest.raises(RateLimitError) as info:
        llm.chat("x")
    assert info.value is boom and info.value.retry_after == 2.5


@pytest.mark.parametrize("kind", sorted(MOCK_ERRORS))
def test_mock_error_option_scripts_each_error_kind_across_a_boundary(kind):
    with pytest.raises(type(MOCK_ERRORS[kind])) as info:
        MockProvider().chat("x", mock_error=kind)
    assert info.value.kind == kind
    assert isinstance(info.value, ProviderError) and isinstance(info.value, RuntimeError)


def test_unknown_mock_error_names_the_known_ones():
    with pytest.raises(InvalidRequestError, match="rate_limited"):
        MockProvider().chat("x", mock_error="nope")


def test_stream_splits_exactly_the_chat_text():
    llm = MockProvider()
    text = llm.chat("  spaced   out\ttext \n").text
    stream = llm.stream_chat("  spaced   out\ttext \n")
    chunks = list(stream)
    assert "".join(chunks) == text and len(chunks) > 3
    assert stream.reply == llm.chat("  spaced   out\ttext \n")


def test_stream_of_scripted_error_raises_at_the_call_not_mid_iteration():
    llm = MockProvider().enqueue(ProviderTimeoutError)
    with pytest.raises(ProviderTimeoutError):
        llm.stream_chat("x")


def test_attachments_are_acknowledged_deterministically():
    att = Attachment.from_bytes(PNG, name="photo.png")
    note = Attachment.from_bytes(b"two words", name="note.txt")
    a = MockProvider().chat("describe", attachments=[att, note])
    b = MockProvider().chat("describe", attachments=[att, note])
    assert a == b
    assert "photo.png image/png 40 bytes sha256:" + att.sha256[:12] in a.text
    assert "note.txt text/plain" in a.text
    assert a.usage["tokens_in"] == 1 + 85 + 2


def test_latency_is_real_and_reported():
    llm = MockProvider(latency_ms=30)
    import time

    t0 = time.perf_counter()
    reply = llm.chat("x")
    assert time.perf_counter() - t0 >= 0.03
    assert reply.usage["latency_ms"] == 30
    assert asyncio.run(llm.achat("x")).usage["latency_ms"] == 30


def test_calls_are_recorded_for_assertions():
    llm = MockProvider()
    llm.chat("hello", temperature=0.5)
    assert llm.calls[-1] == {"prompt": "hello", "model": "mock", "options": {"temperature": 0.5}, "attachments": []}


def test_unknown_config_is_refused_not_ignored():
    with pytest.raises(TypeError, match="api_bse"):
        get_llm_provider("mock", api_bse="http://x")
