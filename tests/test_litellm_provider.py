"""LiteLLMProvider against loopback fake servers: errors, retries, usage and cost, smoke mode, secrets.

Each test names the behaviour it proves; the fake server records what reached it, so "no retry" and "no
network" are asserted from the server's side too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from providers import (
    Attachment,
    ContextWindowExceededError,
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    UnsupportedAttachmentError,
    get_llm_provider,
    to_micro_usd,
)

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
CHAT = "/v1/chat/completions"


@pytest.fixture
def openai_llm(fake_llm, no_provider_keys):
    def make(model="openai/gpt-4o-mini", **kw):
        kw.setdefault("api_key", "sk-test-key-123456")
        kw.setdefault("retry", FAST)
        kw.setdefault("timeout", 5)
        return get_llm_provider("litellm", model_default=model, api_base=fake_llm.openai_base, **kw)

    return make


@pytest.fixture
def ollama_llm(fake_llm, no_provider_keys):
    def make(model="ollama_chat/qwen2.5:0.5b", **kw):
        kw.setdefault("retry", FAST)
        kw.setdefault("timeout", 5)
        return get_llm_provider("litellm", model_default=model, api_base=fake_llm.ollama_base, **kw)

    return make


@pytest.fixture
def connections(monkeypatch):
    """Record every connect() the process attempts (on top of the loopback guard)."""
    seen: list = []
    real = socket.socket.connect

    def spy(self, address):
        seen.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    return seen


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------ credentials
def test_missing_openai_key_fails_at_once_with_no_network(no_provider_keys, connections):
    llm = get_llm_provider("litellm", model_default="openai/gpt-4o-mini")
    with pytest.raises(CredentialsError) as info:
        llm.chat("hi")
    assert str(info.value) == "OPENAI_API_KEY missing or OpenAI unreachable."
    assert isinstance(info.value, RuntimeError)
    assert connections == []
    with pytest.raises(CredentialsError):
        llm.stream_chat("hi")
    assert connections == []


def test_missing_key_names_the_variable_for_any_provider(no_provider_keys, connections):
    llm = get_llm_provider("litellm", model_default="anthropic/claude-3-5-haiku-20241022")
    with pytest.raises(CredentialsError, match="^ANTHROPIC_API_KEY missing or Anthropic unreachable.$"):
        llm.chat("hi")
    assert connections == []


def test_key_from_the_environment_is_used(fake_llm, no_provider_keys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-000000")
    llm = get_llm_provider("litellm", api_base=fake_llm.openai_base, timeout=5)
    assert llm.chat("hi there").text == "echo: hi there"
    assert fake_llm.requests[-1]["headers"]["authorization"] == "Bearer sk-from-env-000000"


def test_401_is_a_credentials_error_and_is_not_retried(openai_llm, fake_llm):
    with pytest.raises(CredentialsError, match=r"OPENAI_API_KEY was rejected by OpenAI \(HTTP 401\)|rejected by OpenAI \(HTTP 401\)"):
        openai_llm("openai/error-401").chat("hi")
    assert fake_llm.hits(CHAT) == 1


def test_403_is_a_credentials_error_and_is_not_retried(openai_llm, fake_llm):
    with pytest.raises(CredentialsError, match="HTTP 403"):
        openai_llm("openai/error-403").chat("hi")
    assert fake_llm.hits(CHAT) == 1


# ------------------------------------------------------------------ unreachable
def test_openai_connection_refused_says_key_missing_or_unreachable(no_provider_keys):
    base = f"http://127.0.0.1:{closed_port()}/v1"
    llm = get_llm_provider("litellm", api_base=base, api_key="sk-test-key-123456", retry=FAST, timeout=2)
    t0 = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as info:
        llm.chat("hi")
    assert str(info.value).startswith("OPENAI_API_KEY missing or OpenAI unreachable.")
    assert base in str(info.value)
    assert info.value.attempts == 3  # connection errors are retried, by us only
    assert time.monotonic() - t0 < 3


def test_ollama_down_names_serve_and_pull(no_provider_keys):
    base = f"http://127.0.0.1:{closed_port()}"
    llm = get_llm_provider("litellm", model_default="ollama_chat/qwen2.5:0.5b", api_base=base, retry=FAST, timeout=2)
    with pytest.raises(ProviderUnavailableError) as info:
        llm.chat("hi")
    assert str(info.value).startswith(
        "Ollama unreachable. Ensure ollama serve is running and model is pulled (e.g., 'ollama pull qwen2.5:0.5b')."
    )


def test_ollama_model_not_pulled_names_the_model_and_the_pull_command(ollama_llm, fake_llm):
    with pytest.raises(ModelNotFoundError) as info:
        ollama_llm("ollama_chat/missing").chat("hi")
    assert "'missing'" in str(info.value) and "ollama pull missing" in str(info.value)
    assert fake_llm.hits("/api/chat") == 1


def test_openai_unknown_model_is_model_not_found_and_not_retried(openai_llm, fake_llm):
    with pytest.raises(ModelNotFoundError, match="no model 'error-404'"):
        openai_llm("openai/error-404").chat("hi")
    assert fake_llm.hits(CHAT) == 1


def test_ollama_base_comes_from_llm_api_base_then_the_default(fake_llm, no_provider_keys, monkeypatch):
    llm = get_llm_provider("litellm", model_default="ollama_chat/qwen2.5:0.5b", timeout=5)
    assert llm._target("ollama_chat/qwen2.5:0.5b").api_base == "http://localhost:11434"
    monkeypatch.setenv("LLM_API_BASE", fake_llm.ollama_base)
    assert llm.chat("via env").text == "echo: via env"
    assert fake_llm.hits("/api/chat") == 1
    explicit = get_llm_provider("litellm", model_default="ollama_chat/x", api_base="http://127.0.0.1:1")
    assert explicit._target("ollama_chat/x").api_base == "http://127.0.0.1:1"


# ------------------------------------------------------------------ retries
def test_429_with_retry_after_is_waited_for_then_succeeds(openai_llm, fake_llm):
    fake_llm.script("error-429")
    t0 = time.monotonic()
    reply = openai_llm().chat("hi there")
    assert reply.text == "echo: hi there"
    assert fake_llm.hits(CHAT) == 2
    assert time.monotonic() - t0 >= 0.95  # the server said Retry-After: 1
    assert reply.usage["latency_ms"] >= 950  # latency includes the retry


def test_429_asking_for_too_long_a_wait_raises_with_retry_after(openai_llm, fake_llm):
    with pytest.raises(RateLimitError) as info:
        openai_llm("openai/error-429-ra60").chat("hi")
    assert info.value.retry_after == 60
    assert fake_llm.hits(CHAT) == 1


def test_429_without_retry_after_backs_off_and_gives_up_after_max_attempts(openai_llm, fake_llm):
    with pytest.raises(RateLimitError) as info:
        openai_llm("openai/error-429-noretry").chat("hi")
    assert info.value.attempts == 3 and "gave up after 3 attempts" in str(info.value)
    assert fake_llm.hits(CHAT) == 3


def test_500_twice_then_success(openai_llm, fake_llm):
    fake_llm.script("error-500", "error-500")
    assert openai_llm().chat("third time").text == "echo: third time"
    assert fake_llm.hits(CHAT) == 3


def test_5xx_exhausted_is_unavailable_with_the_status(openai_llm, fake_llm):
    with pytest.raises(ProviderUnavailableError, match=r"HTTP 502") as info:
        openai_llm("openai/error-502").chat("hi")
    assert info.value.status_code == 502 and fake_llm.hits(CHAT) == 3


def test_max_retries_zero_means_one_attempt(openai_llm, fake_llm):
    with pytest.raises(ProviderUnavailableError):
        openai_llm("openai/error-500", retry=None, max_retries=0).chat("hi")
    assert fake_llm.hits(CHAT) == 1
    # and the SDK's own retries are off: litellm told the openai client 0 retries
    assert fake_llm.requests[-1]["headers"].get("x-stainless-retry-count", "0") == "0"


def test_ollama_500_twice_then_success(ollama_llm, fake_llm):
    fake_llm.script("error-500", "error-500")
    assert ollama_llm().chat("third").text == "echo: third"
    assert fake_llm.hits("/api/chat") == 3


def test_achat_retries_429_then_succeeds(openai_llm, fake_llm):
    fake_llm.script("error-429")
    reply = asyncio.run(openai_llm().achat("async hi"))
    assert reply.text == "echo: async hi" and fake_llm.hits(CHAT) == 2


# ------------------------------------------------------------------ timeouts, bad requests
def test_hang_past_timeout_is_a_timeout_error_within_bounds(openai_llm, fake_llm):
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="did not finish within the 0.5s deadline"):
        openai_llm("openai/hang-5", timeout=0.5, max_retries=0, retry=None).chat("hi")
    assert time.monotonic() - t0 < 2.5


def test_context_overflow_is_its_own_invalid_request_and_not_retried(openai_llm, fake_llm):
    with pytest.raises(ContextWindowExceededError, match="context window") as info:
        openai_llm("openai/ctx-overflow").chat("hi")
    assert isinstance(info.value, InvalidRequestError) and isinstance(info.value, ValueError)
    assert fake_llm.hits(CHAT) == 1


def test_unknown_provider_prefix_is_named_before_any_network(no_provider_keys, connections):
    with pytest.raises(InvalidRequestError, match="model 'bogus/x' refused .*unknown provider prefix 'bogus'"):
        get_llm_provider("litellm", model_default="bogus/x", api_key="sk-test-key-123456")
    llm = get_llm_provider("litellm", api_key="sk-test-key-123456")
    with pytest.raises(InvalidRequestError, match="model 'bogus/x' refused .*unknown provider prefix 'bogus'"):
        llm.chat("hi", model="bogus/x")
    assert connections == []


def test_400_is_invalid_request_and_not_retried(openai_llm, fake_llm):
    with pytest.raises(InvalidRequestError, match="HTTP 400"):
        openai_llm("openai/error-400").chat("hi")
    assert fake_llm.hits(CHAT) == 1


# ------------------------------------------------------------------ streaming failures
def test_stream_failing_before_its_first_chunk_is_retried(openai_llm, fake_llm):
    fake_llm.script("error-500")
    stream = openai_llm().stream_chat("retry me")
    assert "".join(stream) == "echo: retry me"
    assert fake_llm.hits(CHAT) == 2


def test_stream_cut_after_its_first_chunk_raises_and_is_not_retried(openai_llm, fake_llm):
    stream = openai_llm("openai/cut-stream").stream_chat("one two three four five six")
    got = []
    with pytest.raises(Exception) as info:
        for chunk in stream:
            got.append(chunk)
    assert got, "the first chunks arrived before the cut"
    assert "".join(got) != "echo: one two three four five six"
    assert isinstance(info.value, RuntimeError)
    assert fake_llm.hits(CHAT) == 1


# ------------------------------------------------------------------ usage and cost
def test_usage_is_what_the_server_reported_and_cost_follows_the_price_map(openai_llm, fake_llm):
    import litellm

    reply = openai_llm().chat("hello brave new world")
    assert (reply.usage["tokens_in"], reply.usage["tokens_out"]) == (4, 5)
    price = litellm.model_cost["gpt-4o-mini"]
    expected = to_micro_usd(4 * price["input_cost_per_token"] + 5 * price["output_cost_per_token"])
    assert reply.usage["usd_micros"] == expected == 4  # 3.6e-06 USD, half-up


def test_streamed_usage_and_cost_equal_the_non_streamed(openai_llm, fake_llm):
    stream = openai_llm().stream_chat("hello brave new world")
    "".join(stream)
    assert stream.reply.usage["tokens_in"] == 4 and stream.reply.usage["tokens_out"] == 5
    assert stream.reply.usage["usd_micros"] == 4
    assert fake_llm.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_unknown_model_price_is_none_not_zero(openai_llm):
    reply = openai_llm("openai/my-private-model").chat("hello brave new world")
    assert reply.usage["usd_micros"] is None
    assert reply.usage["tokens_in"] == 4


def test_local_ollama_models_cost_zero(ollama_llm):
    reply = ollama_llm().chat("hello brave new world")
    assert reply.usage["usd_micros"] == 0 and reply.usage["tokens_out"] == 5


def test_options_pass_through_and_system_becomes_a_system_message(openai_llm, fake_llm):
    openai_llm().chat("hi", temperature=0.2, max_tokens=7, system="be brief")
    body = fake_llm.requests[-1]["body"]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 7
    assert body["messages"][0] == {"role": "system", "content": "be brief"}


# ------------------------------------------------------------------ attachments
def test_images_go_as_data_url_parts_and_text_is_inlined(openai_llm, fake_llm):
    img = Attachment.from_bytes(PNG, name="p.png")
    note = Attachment.from_bytes(b"note body", name="n.txt")
    openai_llm().chat("describe", attachments=[img, note])
    parts = fake_llm.requests[-1]["body"]["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "describe"}
    assert parts[1]["image_url"]["url"] == img.data_url()
    assert parts[2] == {"type": "text", "text": "[attachment n.txt]\nnote body"}


def test_images_to_a_model_known_without_vision_are_refused_before_any_network(openai_llm, fake_llm):
    img = Attachment.from_bytes(PNG, name="p.png")
    with pytest.raises(UnsupportedAttachmentError, match="does not take images"):
        openai_llm("openai/gpt-3.5-turbo").chat("describe", attachments=[img])
    assert fake_llm.hits() == 0


def test_images_reach_ollama_as_base64(ollama_llm, fake_llm):
    img = Attachment.from_bytes(PNG, name="p.png")
    ollama_llm().chat("describe", attachments=[img])
    msg = fake_llm.requests[-1]["body"]["messages"][-1]
    assert msg["images"] and img.data_url().split(",", 1)[1] in msg["images"][0]


# ------------------------------------------------------------------ smoke mode
def test_smoke_mode_opens_no_socket_and_needs_no_key(no_provider_keys, connections):
    from providers.litellm_provider import load_litellm

    load_litellm()
    llm = get_llm_provider("litellm", smoke=True)
    reply = llm.chat("hello")
    stream = llm.stream_chat("hello")
    assert "".join(stream) == reply.text == "smoke reply from openai/gpt-4o-mini: hello"
    assert asyncio.run(llm.achat("hello")).text == reply.text
    assert reply.usage["usd_micros"] == 0  # nothing was spent
    assert connections == []


def test_smoke_mode_returns_litellm_response_objects(no_provider_keys, monkeypatch):
    import litellm

    seen = []
    real = litellm.completion

    def spy(**kw):
        resp = real(**kw)
        seen.append((kw.get("mock_response"), type(resp).__name__))
        return resp

    monkeypatch.setattr(litellm, "completion", spy)
    get_llm_provider("litellm", smoke=True).chat("hello")
    assert seen == [("smoke reply from openai/gpt-4o-mini: hello", "ModelResponse")]


# ------------------------------------------------------------------ secrets
SENTINEL = "sk-SENTINEL0123456789abcdef"


@pytest.mark.parametrize(
    "model", ["openai/error-401", "openai/error-404", "openai/error-500", "openai/error-400", "openai/ctx-overflow",
              "openai/hang-3", "openai/error-429-ra60"],
)
def test_sentinel_key_appears_in_no_error_log_or_output(fake_llm, no_provider_keys, monkeypatch, caplog, capfd, model):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    caplog.set_level(logging.DEBUG)
    llm = get_llm_provider("litellm", model_default=model, api_base=fake_llm.openai_base, api_key=SENTINEL,
                           retry=FAST, timeout=0.5)
    with pytest.raises(RuntimeError) as info:
        llm.chat("hi")
    err = info.value
    texts = [str(err), repr(err), str(err.to_dict()), caplog.text, repr(llm)]
    out, errout = capfd.readouterr()
    texts += [out, errout]
    assert fake_llm.requests[-1]["headers"]["authorization"] == f"Bearer {SENTINEL}"  # it was really sent
    for text in texts:
        assert SENTINEL not in text
    assert err.__cause__ is None  # the upstream exception (which may quote headers) is not chained


def test_final_errors_carry_no_upstream_exception_as_cause_or_context(openai_llm, fake_llm):
    """Upstream exceptions may quote keys; error trackers walk __cause__ and __context__, so neither is set."""
    with pytest.raises(ProviderUnavailableError) as info:
        openai_llm("openai/error-500").chat("hi")
    assert info.value.__cause__ is None and info.value.__context__ is None
    stream = openai_llm("openai/cut-stream").stream_chat("one two three four five six")
    with pytest.raises(ProviderUnavailableError) as info:
        list(stream)
    assert info.value.__cause__ is None and info.value.__context__ is None
