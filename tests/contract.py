"""The provider contract suite (the LangChain standard-tests pattern): subclass, provide fixtures, inherit tests.

A subclass provides a ``provider`` fixture and implements ``expected_text(prompt)``; every provider (Mock,
LiteLLM in smoke mode, LiteLLM against fake servers, and later the adapters) must pass the same tests.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from providers import USAGE_KEYS, InvalidRequestError, LLMReply

PROMPT = "hello brave new world"


class ProviderContract:
    provider_name: str = ""
    #: Whether usage of a stream must equal usage of chat for the same prompt (true for real servers that count).
    stream_usage_equals_chat: bool = True

    @pytest.fixture
    def provider(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def expected_text(self, prompt: str) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    # ------------------------------------------------------------------ chat
    def test_chat_returns_reply_with_the_contract_shape(self, provider):
        reply = provider.chat(PROMPT)
        assert isinstance(reply, LLMReply)
        assert reply.text == self.expected_text(PROMPT)
        assert reply.provider == self.provider_name
        assert reply.model == provider.model_default
        assert tuple(reply.usage) == USAGE_KEYS
        for key in ("tokens_in", "tokens_out", "latency_ms"):
            assert isinstance(reply.usage[key], int) and reply.usage[key] >= 0
        assert reply.usage["tokens_in"] > 0 and reply.usage["tokens_out"] > 0
        assert reply.usage["usd_micros"] is None or isinstance(reply.usage["usd_micros"], int)

    def test_reply_survives_a_json_round_trip(self, provider):
        reply = provider.chat(PROMPT)
        assert LLMReply.from_dict(json.loads(json.dumps(reply.to_dict()))) == reply

    def test_chat_is_deterministic_for_the_same_input(self, provider):
        a, b = provider.chat(PROMPT), provider.chat(PROMPT)
        assert a.text == b.text
        assert (a.usage["tokens_in"], a.usage["tokens_out"]) == (b.usage["tokens_in"], b.usage["tokens_out"])

    # ------------------------------------------------------------------ streaming
    def test_stream_chunks_join_to_the_text_and_expose_the_final_reply(self, provider):
        stream = provider.stream_chat(PROMPT)
        chunks = list(stream)
        assert all(isinstance(c, str) for c in chunks)
        assert len(chunks) > 1, "a stream should arrive in more than one chunk"
        assert "".join(chunks) == self.expected_text(PROMPT)
        reply = stream.reply
        assert reply.text == "".join(chunks)
        assert reply.provider == self.provider_name
        assert tuple(reply.usage) == USAGE_KEYS
        assert reply.usage["tokens_in"] > 0 and reply.usage["tokens_out"] > 0
        if self.stream_usage_equals_chat:
            chat = provider.chat(PROMPT)
            assert (reply.usage["tokens_in"], reply.usage["tokens_out"]) == (
                chat.usage["tokens_in"],
                chat.usage["tokens_out"],
            )
            assert reply.usage["usd_micros"] == chat.usage["usd_micros"]

    def test_stream_reply_is_unavailable_until_the_stream_is_exhausted(self, provider):
        stream = provider.stream_chat(PROMPT)
        with pytest.raises(RuntimeError, match="has not finished"):
            _ = stream.reply
        next(iter(stream))
        with pytest.raises(RuntimeError, match="has not finished"):
            _ = stream.reply
        stream.close()

    # ------------------------------------------------------------------ async
    def test_achat_gives_the_same_reply_as_chat(self, provider):
        reply = asyncio.run(provider.achat(PROMPT))
        assert reply.text == self.expected_text(PROMPT)
        assert reply.usage["tokens_in"] == provider.chat(PROMPT).usage["tokens_in"]

    def test_astream_chat_chunks_join_to_the_text(self, provider):
        async def run():
            stream = provider.astream_chat(PROMPT)
            chunks = [c async for c in stream]
            return chunks, stream.reply

        chunks, reply = asyncio.run(run())
        assert "".join(chunks) == self.expected_text(PROMPT) == reply.text
        assert reply.usage["tokens_out"] > 0

    # ------------------------------------------------------------------ bad input
    @pytest.mark.parametrize("bad", ["", "   \n", None, 42, ["hi"]])
    def test_bad_prompt_is_an_invalid_request(self, provider, bad):
        with pytest.raises(InvalidRequestError, match="prompt"):
            provider.chat(bad)
        with pytest.raises(InvalidRequestError, match="prompt"):
            provider.stream_chat(bad)

    def test_bad_option_is_an_invalid_request_naming_the_option(self, provider):
        with pytest.raises(InvalidRequestError, match="temperature"):
            provider.chat(PROMPT, temperature="hot")
        with pytest.raises(InvalidRequestError, match="unknown option 'temprature'"):
            provider.chat(PROMPT, temprature=0.2)

    def test_invalid_request_is_also_a_value_error_and_a_runtime_error(self, provider):
        with pytest.raises(ValueError):
            provider.chat("")
        with pytest.raises(RuntimeError):
            provider.chat("")
