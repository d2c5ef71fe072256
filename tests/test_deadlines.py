"""``timeout`` is a deadline for the whole call: a trickling or endless upstream, retries and back-off all end
by it (plus a small margin), on chat, stream_chat, achat and astream_chat, for the provider's ``timeout=`` and
the per-request ``timeout`` option. Also: the option's validation, which of the retry budget and the deadline
wins, the sync transport's pass-through, and retry jitter that differs between processes forked from one image.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import time
import types

import httpcore
import pytest

from providers import (
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    get_llm_provider,
)
from providers import retry as retry_mod
from providers.deadline import MAX_TIMEOUT_S, Deadline, current, scope
from providers.deadline_http import _clip, install

CHAT = "/v1/chat/completions"
OLLAMA_CHAT = "/api/chat"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
CALLS = ("chat", "stream_chat", "achat", "astream_chat")
#: How far past its deadline a call may end: scheduling on a loaded 2-core machine, not slack in the design.
MARGIN = 1.0


def run(llm, call: str, prompt: str = "hi there", **options) -> tuple[list[str], object]:
    """Run one call to its end; returns (chunks seen, reply). Raises what the call raises."""
    chunks: list[str] = []
    if call == "chat":
        return chunks, llm.chat(prompt, **options)
    if call == "achat":
        return chunks, asyncio.run(llm.achat(prompt, **options))
    if call == "stream_chat":
        stream = llm.stream_chat(prompt, **options)
        chunks.extend(stream)
        return chunks, stream.reply

    async def consume():
        stream = llm.astream_chat(prompt, **options)
        async for chunk in stream:
            chunks.append(chunk)
        return stream.reply

    return chunks, asyncio.run(consume())


@pytest.fixture(scope="module")
def warm(_fake_llm_server):
    """LiteLLM's one-off import and first-call costs are paid before any deadline's clock starts."""
    llm = get_llm_provider("litellm", api_base=_fake_llm_server.openai_base, api_key="sk-warm-000000", timeout=10)
    ollama = get_llm_provider("litellm", model_default="ollama_chat/qwen2.5:0.5b",
                              api_base=_fake_llm_server.ollama_base, timeout=10)
    for call in CALLS:
        run(llm, call)
        run(ollama, call)
    return llm


def provider(fake_llm, model: str, **kw):
    base = fake_llm.ollama_base if model.startswith("ollama") else fake_llm.openai_base
    kw.setdefault("retry", FAST)
    kw.setdefault("api_key", "sk-test-key-123456")
    return get_llm_provider("litellm", model_default=model, api_base=base, **kw)


# ------------------------------------------------------------------ trickling and endless upstreams
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("model", ["openai/drip", "openai/endless", "ollama_chat/drip", "ollama_chat/endless"])
def test_a_trickling_upstream_ends_in_timeout_error_by_the_deadline(warm, fake_llm, model, call):
    """One byte every 0.5 s (drip) or a chunk every 0.5 s forever (endless): no single read ever waits the
    1 s timeout, so only a whole-call deadline can end it. It ends by 1 s + margin, one upstream attempt."""
    llm = provider(fake_llm, model, timeout=1)
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as info:
        run(llm, call)
    elapsed = time.monotonic() - t0
    assert 0.95 <= elapsed <= 1 + MARGIN, f"{elapsed:.2f}s"
    message = str(info.value)
    assert "within the 1s deadline" in message and "covers the whole call" in message
    assert "Raise timeout=" in message and "127.0.0.1:" in message
    assert info.value.attempts == 1 and info.value.to_dict()["kind"] == "timeout"
    assert fake_llm.hits(OLLAMA_CHAT if model.startswith("ollama") else CHAT) == 1
    if model.endswith("endless") and call in ("stream_chat", "astream_chat"):
        assert "The reply is incomplete" in message  # text had reached the caller: the message says so


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("model", ["openai/drip", "openai/endless"])
def test_a_trickling_upstream_ends_by_the_deadline_on_litellms_own_openai_route_too(warm, fake_llm, model, call):
    """The same through ``litellm.completion`` (``fast_path=False``: LiteLLM's OpenAI client, whose httpx client
    is the one :func:`providers.deadline_http.install` gave it)."""
    llm = provider(fake_llm, model, timeout=1, fast_path=False)
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="within the 1s deadline"):
        run(llm, call)
    assert 0.95 <= time.monotonic() - t0 <= 1 + MARGIN
    assert fake_llm.hits(CHAT) == 1


@pytest.mark.parametrize("call", CALLS)
def test_the_request_timeout_option_is_the_deadline_of_that_call(warm, fake_llm, call):
    """A provider with a 30 s timeout; one request asks for 0.6 s: that request ends by 0.6 s + margin."""
    llm = provider(fake_llm, "openai/drip", timeout=30)
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"within the 0.6s deadline"):
        run(llm, call, timeout=0.6)
    assert time.monotonic() - t0 <= 0.6 + MARGIN


@pytest.mark.parametrize("call", ["chat", "astream_chat"])
def test_the_request_timeout_option_may_be_longer_than_the_providers(warm, fake_llm, call):
    """The option replaces the provider's timeout for that call: 0.3 s on the provider, 3 s asked, a server
    that answers after 1 s: the reply arrives."""
    llm = provider(fake_llm, "openai/hang-1", timeout=0.3)
    _, reply = run(llm, call, timeout=3)
    assert reply.text == "echo: hi there"


def test_a_stream_that_outlives_the_deadline_between_chunks_is_cut_with_what_was_delivered(warm, fake_llm):
    """The deadline covers the stream to its last chunk: an endless stream delivers its first chunks, then
    ends in ProviderTimeoutError, and ``.reply`` is never a truncated reply."""
    llm = provider(fake_llm, "openai/endless-0.1", timeout=0.8)
    stream = llm.stream_chat("go")
    got = []
    with pytest.raises(ProviderTimeoutError, match="The reply is incomplete"):
        for chunk in stream:
            got.append(chunk)
    assert got[0] == "echo:" and len(got) >= 2 and set(got[1:]) == {" more"}
    assert not stream.done
    with pytest.raises(RuntimeError, match="has not finished"):
        stream.reply


# ------------------------------------------------------------------ retries under the deadline
def test_back_off_never_sleeps_past_the_deadline(warm, fake_llm):
    """429 with Retry-After: 1 and a 0.9 s deadline: the wait would end past it, so the call ends at once with
    the rate limit (the real cause), saying why it did not retry."""
    llm = provider(fake_llm, "openai/error-429", timeout=0.9)
    t0 = time.monotonic()
    with pytest.raises(RateLimitError, match="the next retry would start after the 0.9s deadline") as info:
        llm.chat("hi")
    assert time.monotonic() - t0 < 0.9
    assert info.value.attempts == 1 and fake_llm.hits(CHAT) == 1


@pytest.mark.parametrize("call", CALLS)
def test_each_retry_gets_only_the_time_left(warm, fake_llm, call):
    """A 500, then a server that drips: the second attempt starts with less than the whole timeout and the
    call still ends by the deadline, after exactly two upstream attempts."""
    fake_llm.script("error-500", "drip")
    llm = provider(fake_llm, "openai/gpt-4o-mini", timeout=1)
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as info:
        run(llm, call)
    assert time.monotonic() - t0 <= 1 + MARGIN
    assert info.value.attempts == 2 and fake_llm.hits(CHAT) == 2


def test_budget_and_deadline_the_earlier_wins():
    """``RetryPolicy.budget_s`` stops *starting* retries; the deadline ends the call. Whichever comes first
    decides (no network: the attempt fails at once with a retryable error)."""

    def boom():
        raise ProviderUnavailableError("down", provider="t")

    # The budget is the tighter: retries stop after it, well before the 10 s deadline. (Budget and deadline are
    # 1 s and up so a loaded machine still fits two attempts in them.)
    policy = RetryPolicy(max_attempts=500, base_delay_s=0.05, max_delay_s=0.05, budget_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as info:
        retry_mod.retry_call(boom, lambda e: e, policy, deadline=Deadline(10))
    assert time.monotonic() - t0 < 10 and 2 <= info.value.attempts < 500  # not every attempt, not the deadline
    assert "deadline" not in str(info.value)
    # The deadline is the tighter: the budget (120 s) never comes into play. Usually the last wait would end past
    # the deadline, so it is not started; on a loaded machine a 50 ms sleep can overrun the deadline instead,
    # and the call ends as a deadline timeout. Either way the deadline decided, not the budget.
    policy = RetryPolicy(max_attempts=500, base_delay_s=0.05, max_delay_s=0.05, budget_s=120)
    t0 = time.monotonic()
    with pytest.raises((ProviderUnavailableError, ProviderTimeoutError)) as info:
        retry_mod.retry_call(boom, lambda e: e, policy, deadline=Deadline(1.0))
    assert time.monotonic() - t0 < 1.0 + MARGIN and 2 <= info.value.attempts < 500
    assert re.search(r"after the 1s deadline|within its 1s deadline", str(info.value)), str(info.value)


# ------------------------------------------------------------------ the timeout's validation
@pytest.mark.parametrize("bad", [0, -1, 0.0, math.nan, math.inf, -math.inf, MAX_TIMEOUT_S + 1, True, "5", [1]])
def test_a_bad_timeout_option_is_refused_before_any_network(fake_llm, bad):
    llm = provider(fake_llm, "openai/gpt-4o-mini", timeout=5)
    with pytest.raises(InvalidRequestError, match="timeout"):
        llm.chat("hi", timeout=bad)
    with pytest.raises(InvalidRequestError, match="timeout"):
        get_llm_provider("mock").chat("hi", timeout=bad)
    assert fake_llm.hits() == 0


@pytest.mark.parametrize("bad", [0, -2, math.nan, math.inf, MAX_TIMEOUT_S * 2, "60", False])
def test_a_bad_provider_timeout_is_refused_at_construction(bad):
    for name in ("litellm", "mock"):
        with pytest.raises(ValueError, match="timeout must be"):
            get_llm_provider(name, timeout=bad)


# ------------------------------------------------------------------ the mock's scripted latency
@pytest.mark.parametrize("call", CALLS)
def test_the_mock_respects_its_deadline_when_its_latency_is_longer(call):
    llm = get_llm_provider("mock", latency_ms=2000, timeout=5)
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"within the 0.2s deadline"):
        run(llm, call, timeout=0.2)
    assert 0.19 <= time.monotonic() - t0 < 0.2 + MARGIN
    fast = get_llm_provider("mock", latency_ms=10, timeout=0.5)
    assert run(fast, call)[1].text == "mock reply to: hi there"


# ------------------------------------------------------------------ the sync transport
def test_litellm_sync_http_goes_through_the_deadline_transport(warm):
    from providers.deadline_http import DeadlineTransport
    from providers.litellm_provider import load_litellm

    litellm = load_litellm()
    assert isinstance(litellm.sync_transport, DeadlineTransport)
    assert litellm.client_session._transport is litellm.sync_transport
    pool = litellm.sync_transport._pool
    assert type(pool._network_backend).__name__ == "_DeadlineBackend"  # the hook httpx/httpcore still honour


def test_a_hosts_own_client_session_is_left_alone_and_reported(caplog):
    import httpx

    theirs = httpx.Client()
    fake = types.SimpleNamespace(client_session=theirs, sync_transport=None)
    try:
        assert install(fake) is False
        assert fake.client_session is theirs  # never replaced
        assert "bounded per read" in caplog.text
    finally:
        theirs.close()
        fake.sync_transport.close()


def test_the_transport_clips_waits_only_inside_a_deadline_scope():
    assert _clip(5.0, httpcore.ReadTimeout) == 5.0 and _clip(None, httpcore.ReadTimeout) is None
    with scope(Deadline(0.5)):
        assert 0 < _clip(5.0, httpcore.ReadTimeout) <= 0.5
        assert _clip(0.1, httpcore.ReadTimeout) == 0.1
    with scope(Deadline(0.001)), pytest.raises(httpcore.ReadTimeout, match="deadline has passed"):
        time.sleep(0.002)
        _clip(5.0, httpcore.ReadTimeout)
    assert current() is None


def test_a_streams_deadline_is_not_in_force_while_the_caller_holds_a_chunk(warm, fake_llm):
    """The caller's own HTTP between chunks must not be clipped by the stream's deadline."""
    llm = provider(fake_llm, "openai/gpt-4o-mini", timeout=5)
    seen = [current() for _ in llm.stream_chat("one two three four")]
    assert len(seen) > 2 and seen == [None] * len(seen)


# ------------------------------------------------------------------ jitter across forked/restored processes
def _jitter_in_child(control: random.Random | None) -> list[float]:
    """Fork (the same memory image, twice, as forked workers are) and return the child's back-off waits.
    ``control``: draw from this in-process generator instead (what a module-level ``random.Random`` would be)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            if control is not None:
                waits = [control.uniform(0.25, 0.5) for _ in range(8)]
            else:
                policy = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=8)
                error = ProviderUnavailableError("x")
                waits = [policy.wait_before(1 + i % 5, error, 0.0) for i in range(8)]
            os.write(write_fd, repr(waits).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 4096):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    return eval(data.decode())  # noqa: S307 - our own child's repr of a list of floats


def test_retry_jitter_differs_between_processes_forked_from_one_image():
    RetryPolicy().wait_before(1, ProviderUnavailableError("x"), 0.0)  # used before the fork
    a, b = _jitter_in_child(None), _jitter_in_child(None)
    assert len(a) == len(b) == 8 and a != b
    # The control proves the test can see the hazard: a generator whose state is copied gives twins.
    shared = random.Random(1234)
    assert _jitter_in_child(shared) == _jitter_in_child(shared)


def test_retry_jitter_differs_between_two_restores_of_one_memory_snapshot():
    """A Modal memory snapshot copies the process's memory and runs no fork hooks (the global ``random``
    reseeds itself after ``os.fork`` only). Two deep copies of the jitter source stand for two restores."""
    import copy

    assert isinstance(retry_mod._JITTER, random.SystemRandom)
    with pytest.raises(NotImplementedError, match="does not have state"):
        retry_mod._JITTER.getstate()  # nothing in process memory decides the next draw
    with pytest.raises(NotImplementedError):
        copy.deepcopy(retry_mod._JITTER)
    seeded = random.Random(1234)  # the control: a stateful generator restored twice gives twins
    one, two = copy.deepcopy(seeded), copy.deepcopy(seeded)
    assert [one.random() for _ in range(8)] == [two.random() for _ in range(8)]


def test_a_call_without_a_deadline_error_keeps_its_own_class(warm, fake_llm):
    """Only the deadline turns an error into ProviderTimeoutError: a 500 on every attempt stays a 500."""
    llm = provider(fake_llm, "openai/error-500", timeout=5)
    with pytest.raises(ProviderError) as info:
        llm.chat("hi")
    assert type(info.value) is ProviderUnavailableError and info.value.attempts == 3
