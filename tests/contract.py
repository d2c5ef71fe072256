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


# ============================================================================ conversations, structure, tools
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "role": {"enum": ["engineer", "poet", "mathematician"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "integer", "minimum": 1000}},
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "age", "role", "tags", "address"],
}
WEATHER_TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
        },
    },
    {"name": "get_time", "description": "Local time", "parameters": {"type": "object", "properties": {}}},
]
BAD_HISTORIES = [
    "not a list",
    [{"role": "bot", "content": "hi"}],
    [{"role": "user", "content": 42}],
    [{"role": "user"}],
    [{"role": "user", "content": "hi", "extra": 1}],
    [{"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],  # a tool turn without its call
    [{"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {}}]}],
]


def _validates(schema, value) -> bool:
    from jsonschema import validators

    return validators.validator_for(schema)(schema).is_valid(value)


def _person_model():
    from pydantic import BaseModel

    class Address(BaseModel):
        city: str
        zip: int

    class Person(BaseModel):
        name: str
        age: int
        address: Address

    return Person


def _four_ways(provider, prompt, **kw):
    """The same request through chat, stream_chat, achat and astream_chat: (name, reply, streamed text)."""
    out = [("chat", provider.chat(prompt, **kw), None)]
    stream = provider.stream_chat(prompt, **kw)
    text = "".join(stream)
    out.append(("stream_chat", stream.reply, text))
    out.append(("achat", asyncio.run(provider.achat(prompt, **kw)), None))

    async def astream():
        s = provider.astream_chat(prompt, **kw)
        return "".join([c async for c in s]), s.reply

    text, reply = asyncio.run(astream())
    out.append(("astream_chat", reply, text))
    return out


class StructuredContract:
    """Conversations, structured output and tool calls: the same cases for every provider and adapter."""

    def test_history_is_accepted_on_all_four_methods(self, provider):
        history = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]
        for how, reply, streamed in _four_ways(provider, "and now?", history=history):
            assert isinstance(reply.text, str) and reply.text, how
            assert reply.usage["tokens_in"] > 0, how
            if streamed is not None:
                assert streamed == reply.text, how

    @pytest.mark.parametrize("bad", BAD_HISTORIES, ids=range(len(BAD_HISTORIES)))
    def test_malformed_history_is_an_invalid_request_on_all_four_methods(self, provider, bad):
        with pytest.raises(InvalidRequestError, match="history"):
            provider.chat(PROMPT, history=bad)
        with pytest.raises(InvalidRequestError, match="history"):
            provider.stream_chat(PROMPT, history=bad)
        with pytest.raises(InvalidRequestError, match="history"):
            asyncio.run(provider.achat(PROMPT, history=bad))
        with pytest.raises(InvalidRequestError, match="history"):
            provider.astream_chat(PROMPT, history=bad)

    def test_output_schema_gives_data_that_validates_on_all_four_methods(self, provider):
        for how, reply, streamed in _four_ways(provider, "Describe Ada Lovelace", output_schema=PERSON_SCHEMA):
            assert _validates(PERSON_SCHEMA, reply.data), (how, reply.data)
            assert json.loads(reply.text) == reply.data, how
            assert reply.finish_reason == "stop", how
            assert reply.tool_calls is None, how
            if streamed is not None:
                assert streamed == reply.text, how

    def test_pydantic_output_schema_gives_an_instance(self, provider):
        person = _person_model()
        reply = provider.chat("Describe Ada Lovelace", output_schema=person)
        assert isinstance(reply.data, person)
        assert person.model_validate_json(reply.text) == reply.data

    def test_structured_reply_survives_a_json_round_trip(self, provider):
        person = _person_model()
        reply = provider.chat("Describe Ada Lovelace", output_schema=person)
        wire = json.loads(json.dumps(reply.to_dict()))
        assert isinstance(wire["data"], dict)
        assert LLMReply.from_dict(wire, output_schema=person) == reply
        plain = provider.chat("Describe Ada Lovelace", output_schema=PERSON_SCHEMA)
        assert LLMReply.from_dict(json.loads(json.dumps(plain.to_dict()))) == plain

    def test_tools_give_a_valid_call_of_the_first_tool_on_all_four_methods(self, provider):
        for how, reply, _ in _four_ways(provider, "Weather in Paris?", tools=WEATHER_TOOLS):
            assert reply.finish_reason == "tool_calls", how
            assert reply.data is None, how
            (call,) = reply.tool_calls
            assert set(call) == {"id", "name", "arguments"} and call["id"], how
            assert call["name"] == "get_weather", how
            assert _validates(WEATHER_TOOLS[0]["parameters"], call["arguments"]), (how, call)

    def test_tool_choice_names_the_tool_to_call(self, provider):
        reply = provider.chat("What time is it?", tools=WEATHER_TOOLS, tool_choice="get_time")
        assert [c["name"] for c in reply.tool_calls] == ["get_time"]
        assert reply.finish_reason == "tool_calls"

    def test_tool_result_sent_back_through_history_gets_an_answer(self, provider):
        first = provider.chat("Weather in Paris?", tools=WEATHER_TOOLS)
        history = [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.text or None, "tool_calls": first.tool_calls},
            {"role": "tool", "tool_call_id": first.tool_calls[0]["id"], "content": "sunny, 21 C"},
        ]
        for how, reply, _ in _four_ways(provider, "Answer with the tool's result.", tools=WEATHER_TOOLS, history=history):
            assert reply.tool_calls is None, how
            assert reply.finish_reason == "stop", how
            assert reply.text, how

    def test_tool_call_reply_survives_a_json_round_trip(self, provider):
        reply = provider.chat("Weather in Paris?", tools=WEATHER_TOOLS)
        assert LLMReply.from_dict(json.loads(json.dumps(reply.to_dict()))) == reply

    @pytest.mark.parametrize(
        "kwargs, field",
        [
            ({"output_schema": {"type": "nonsense"}}, "output_schema"),
            ({"output_schema": "a string"}, "output_schema"),
            ({"tools": [{"name": "bad name!", "parameters": {"type": "object"}}]}, "tools"),
            ({"tools": [{"name": "t", "parameters": {"type": "array"}}]}, "tools"),
            ({"tools": WEATHER_TOOLS, "tool_choice": "nope"}, "tool_choice"),
            ({"tool_choice": "auto"}, "tool_choice"),
            ({"output_retries": -1}, "output_retries"),
        ],
    )
    def test_bad_structure_is_an_invalid_request_naming_the_field(self, provider, kwargs, field):
        with pytest.raises(InvalidRequestError, match=field):
            provider.chat(PROMPT, **kwargs)
        with pytest.raises(InvalidRequestError, match=field):
            provider.stream_chat(PROMPT, **kwargs)
        with pytest.raises(InvalidRequestError, match=field):
            asyncio.run(provider.achat(PROMPT, **kwargs))
        with pytest.raises(InvalidRequestError, match=field):
            provider.astream_chat(PROMPT, **kwargs)
