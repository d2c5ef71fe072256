"""Conversations, structured output and tool calls in the provider core: validation, message order, the
re-ask loop (counts and usage sums), the mock's scripting, and LiteLLM's request/reply building against the
loopback fake server."""

from __future__ import annotations

import asyncio
import json

import pytest

from providers import InvalidRequestError, LLMReply, RetryPolicy, get_llm_provider
from providers.base import build_request, openai_messages
from providers.errors import OutputValidationError, ProviderError, error_from_dict
from providers.mock import MockProvider
from providers.structured import OutputSchema, sum_usage

FAST = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02)
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 1}}, "required": ["a"]}
TOOLS = [{"name": "get_weather", "description": "w",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


# ------------------------------------------------------------------------------------------- message order
def test_messages_go_system_then_history_then_prompt():
    history = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
               {"role": "system", "content": "late system"}]
    req = build_request("the prompt", model=None, default_model="m", history=history, options={"system": "S"})
    assert openai_messages(req) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": "the prompt"},
    ]


def test_tool_turns_are_sent_in_openai_shape():
    call = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    history = [{"role": "user", "content": "w?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    req = build_request("so?", model=None, default_model="m", history=history, tools=TOOLS)
    msgs = openai_messages(req)
    assert msgs[1]["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    assert msgs[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert history[1]["tool_calls"][0]["arguments"] == {"city": "Paris"}, "the caller's history is not mutated"


@pytest.mark.parametrize("history, fragment", [
    ([{"role": "assistant", "content": "x", "tool_calls": [{"id": "c1", "name": "t", "arguments": {}}]},
      {"role": "user", "content": "next"}], "no tool turn"),
    ([{"role": "assistant", "content": "x", "tool_calls": [{"id": "c1", "name": "t", "arguments": {}}]},
      {"role": "tool", "tool_call_id": "c2", "content": "r"}], "did not make"),
    ([{"role": "assistant", "content": "x", "tool_calls": [{"id": "c1", "name": "t", "arguments": "{}"}]},
      {"role": "tool", "tool_call_id": "c1", "content": "r"}], "arguments"),
    ([{"role": "assistant", "content": "x", "tool_calls": [{"id": "c1", "name": "t", "arguments": {}},
                                                           {"id": "c1", "name": "t", "arguments": {}}]}], "repeats"),
    ([{"role": "tool", "tool_call_id": "c1", "content": {"temp": 3}}], "json.dumps"),
    ([{"role": "user", "content": "x" * 2_000_001}], "longer than"),
    ([{"role": "user", "content": "x"}] * 1001, "at most 1000"),
])
def test_malformed_history_names_the_problem(history, fragment):
    with pytest.raises(InvalidRequestError, match=fragment):
        build_request("p", model=None, default_model="m", history=history)


def test_output_schema_and_response_format_together_are_refused():
    with pytest.raises(InvalidRequestError, match="not both"):
        build_request("p", model=None, default_model="m", output_schema=SCHEMA,
                      options={"response_format": {"type": "json_object"}})


def test_pydantic_tool_parameters_become_their_json_schema():
    from pydantic import BaseModel

    class Args(BaseModel):
        city: str

    req = build_request("p", model=None, default_model="m", tools=[{"name": "w", "parameters": Args}])
    assert req.tools[0]["parameters"]["properties"]["city"]["type"] == "string"


# ------------------------------------------------------------------------------------------- schema objects
def test_output_schema_reports_where_and_why_json_does_not_validate():
    spec = OutputSchema.of(SCHEMA)
    assert spec.parse('{"a": 2}') == {"a": 2}
    with pytest.raises(ValueError, match=r"at \$\.a: 0 is less than the minimum of 1"):
        spec.parse('{"a": 0}')
    with pytest.raises(ValueError, match="not JSON"):
        spec.parse("Sure! Here it is: {")


def test_sum_usage_adds_every_attempt_and_unknown_cost_stays_unknown():
    a = {"tokens_in": 3, "tokens_out": 4, "latency_ms": 5, "usd_micros": 6}
    b = {"tokens_in": 10, "tokens_out": 20, "latency_ms": 30, "usd_micros": 40}
    assert sum_usage([a, b]) == {"tokens_in": 13, "tokens_out": 24, "latency_ms": 35, "usd_micros": 46}
    assert sum_usage([a, {**b, "usd_micros": None}])["usd_micros"] is None


def test_output_validation_error_is_a_non_retryable_provider_error_that_crosses_boundaries():
    err = OutputValidationError("bad", raw_text="{oops", usage={"tokens_in": 1, "tokens_out": 2, "latency_ms": 3,
                                                                "usd_micros": 0}, attempts=2)
    assert isinstance(err, ProviderError) and isinstance(err, RuntimeError) and not err.retryable
    back = error_from_dict(json.loads(json.dumps(err.to_dict())))
    assert type(back) is OutputValidationError
    assert (back.raw_text, back.usage, back.attempts, back.kind) == ("{oops", err.usage, 2, "output_invalid")


# ------------------------------------------------------------------------------------------- the mock
def test_mock_reask_sends_the_validation_error_back_and_sums_usage():
    llm = MockProvider().enqueue('{"a": 0}', '{"a": 5}')
    reply = llm.chat("give me a", output_schema=SCHEMA)
    assert reply.data == {"a": 5}
    first = llm.calls[-1]  # one call record per chat, however many attempts
    assert first["output_schema"] == SCHEMA
    # attempt 1: 3 prompt words, 2 out; attempt 2 also reads the bad reply and the error message.
    assert reply.usage["tokens_out"] == 4
    assert reply.usage["tokens_in"] > 2 * 3


def test_mock_gives_up_after_output_retries_with_the_last_raw_text():
    llm = MockProvider().enqueue("nope", '{"a": "x"}', '{"a": 9}')
    with pytest.raises(OutputValidationError) as info:
        llm.chat("give me a", output_schema=SCHEMA, output_retries=1)
    assert info.value.raw_text == '{"a": "x"}' and info.value.attempts == 2
    assert "is not of type 'integer'" in info.value.message
    assert info.value.usage["tokens_out"] == 1 + 2
    assert llm.chat("again", output_schema=SCHEMA).data == {"a": 9}, "the unused scripted turn is still queued"


def test_mock_output_retries_zero_means_no_reask():
    llm = MockProvider().enqueue("nope", '{"a": 1}')
    with pytest.raises(OutputValidationError):
        llm.chat("x", output_schema=SCHEMA, output_retries=0)


def test_mock_scripts_data_and_tool_calls_and_invalid_then_valid_tool_calls():
    llm = MockProvider().enqueue(
        {"data": {"a": 3}},
        {"tool_calls": [{"name": "get_weather", "arguments": {"town": "Paris"}}]},
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_x"}]},
    )
    assert llm.chat("x", output_schema=SCHEMA).data == {"a": 3}
    reply = llm.chat("x", tools=TOOLS)
    assert reply.tool_calls == [{"id": "call_x", "name": "get_weather", "arguments": {"city": "Paris"}}]
    with pytest.raises(ValueError, match="scripted turn"):
        llm.enqueue({"texte": "typo"})


def test_mock_stream_of_invalid_json_yields_the_text_then_raises_without_reasking():
    llm = MockProvider().enqueue("not json at all", '{"a": 1}')
    stream = llm.stream_chat("x", output_schema=SCHEMA)
    chunks = []
    with pytest.raises(OutputValidationError, match="streams are not re-asked"):
        for c in stream:
            chunks.append(c)
    assert "".join(chunks) == "not json at all"
    assert llm.chat("x", output_schema=SCHEMA).data == {"a": 1}


def test_mock_reacts_to_history_deterministically():
    llm = MockProvider()
    h = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert llm.chat("and?", history=h).text == "mock reply to: and? [after 2 turns]"
    assert llm.chat("and?", history=h) == llm.chat("and?", history=h)
    assert llm.chat("and?", history=h).usage["tokens_in"] == 1 + 2
    assert llm.calls[-1]["history"] == h


def test_mock_refuses_a_schema_it_cannot_satisfy_before_answering():
    with pytest.raises(InvalidRequestError, match="pattern"):
        MockProvider().chat("x", output_schema={"type": "string", "pattern": "^[a-z]+$"})
    assert MockProvider().enqueue('"abc"').chat("x", output_schema={"type": "string", "pattern": "^[a-z]+$"}).data == "abc"


def test_mock_tool_choice_none_answers_in_text():
    reply = MockProvider().chat("x", tools=TOOLS, tool_choice="none")
    assert reply.tool_calls is None and reply.text == "mock reply to: x"


# ------------------------------------------------------------------------------------------- LiteLLM
@pytest.fixture
def oa(fake_llm, no_provider_keys):
    return get_llm_provider("litellm", model_default="openai/gpt-4o-mini", api_base=fake_llm.openai_base,
                            api_key="sk-test-structured", timeout=5, retry=FAST)


def _body(fake_llm, i=-1):
    return [r for r in fake_llm.requests if r["path"].endswith("/chat/completions")][i]["body"]


def test_litellm_sends_system_history_prompt_in_order(oa, fake_llm):
    history = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}]
    oa.chat("p2", history=history, system="S")
    assert _body(fake_llm)["messages"] == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "p2"},
    ]


def test_litellm_sends_a_strict_json_schema_when_the_model_supports_it_and_the_schema_allows(oa, fake_llm):
    strict = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    oa.chat("x", output_schema=strict)
    rf = _body(fake_llm)["response_format"]
    assert rf == {"type": "json_schema", "json_schema": {"name": "output", "schema": strict, "strict": True}}
    oa.chat("x", output_schema=SCHEMA)  # open object: strict mode would answer 400
    assert "strict" not in _body(fake_llm)["response_format"]["json_schema"]


def test_litellm_uses_json_mode_plus_instructions_for_a_model_without_schema_support(fake_llm, no_provider_keys):
    llm = get_llm_provider("litellm", model_default="openai/some-unknown-model", api_base=fake_llm.openai_base,
                           api_key="sk-test-structured", timeout=5, retry=FAST)
    reply = llm.chat("x", output_schema=SCHEMA, system="Be terse.")
    body = _body(fake_llm)
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]["content"]
    assert system.startswith("Be terse.") and json.dumps(SCHEMA, separators=(",", ":")) in system
    assert reply.data["a"] >= 1


def test_litellm_reask_after_invalid_json_counts_two_requests_and_sums_usage(oa, fake_llm):
    fake_llm.script("json-invalid")
    reply = oa.chat("give me a", output_schema=SCHEMA)
    bodies = [r["body"] for r in fake_llm.requests]
    assert len(bodies) == 2
    assert bodies[1]["messages"][-2] == {"role": "assistant", "content": '{"oops": '}
    assert "did not validate" in bodies[1]["messages"][-1]["content"]
    # fake usage: prompt = words of all messages, completion = words of the reply
    first_in = 3
    second_in = sum(len(str(m["content"]).split()) for m in bodies[1]["messages"])
    assert reply.usage["tokens_in"] == first_in + second_in
    assert reply.usage["tokens_out"] == len('{"oops": '.split()) + len(reply.text.split())
    assert reply.data["a"] >= 1


def test_litellm_gives_up_with_output_validation_error_after_retries(oa, fake_llm):
    fake_llm.script("json-invalid", "json-invalid")
    with pytest.raises(OutputValidationError) as info:
        oa.chat("x", output_schema=SCHEMA)
    assert info.value.raw_text == '{"oops": ' and info.value.attempts == 2
    assert len(fake_llm.requests) == 2, "not retried by the transport retry loop either"


def test_litellm_tool_call_with_invalid_arguments_is_reasked_as_a_tool_error(oa, fake_llm):
    fake_llm.script("tool-invalid")
    reply = oa.chat("weather?", tools=TOOLS)
    assert reply.tool_calls[0]["name"] == "get_weather"
    second = [r["body"] for r in fake_llm.requests][1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["arguments"] == "{not json"
    assert second[-1]["role"] == "tool" and second[-1]["content"].startswith("Error: the arguments of get_weather")


def test_litellm_tool_call_invalid_twice_is_output_validation_error(oa, fake_llm):
    fake_llm.script("tool-invalid", "tool-invalid")
    with pytest.raises(OutputValidationError, match="tool call did not validate"):
        oa.chat("weather?", tools=TOOLS)


def test_litellm_sends_tools_and_tool_choice_in_openai_shape(oa, fake_llm):
    oa.chat("weather?", tools=TOOLS, tool_choice="get_weather")
    body = _body(fake_llm)
    assert body["tools"] == [{"type": "function", "function": TOOLS[0]}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_litellm_streamed_tool_call_deltas_are_assembled(oa, fake_llm):
    stream = oa.stream_chat("weather?", tools=TOOLS)
    assert list(stream) == []
    (call,) = stream.reply.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["arguments"]["city"], str)
    assert stream.reply.finish_reason == "tool_calls"

    async def run():
        s = oa.astream_chat("weather?", tools=TOOLS)
        return [c async for c in s], s.reply

    chunks, reply = asyncio.run(run())
    assert chunks == [] and reply.tool_calls == stream.reply.tool_calls


def test_litellm_stream_of_invalid_json_raises_after_the_text(oa, fake_llm):
    fake_llm.script("json-invalid")
    stream = oa.stream_chat("x", output_schema=SCHEMA)
    with pytest.raises(OutputValidationError):
        list(stream)
    assert stream.text == '{"oops": '
    assert len(fake_llm.requests) == 1


def test_smoke_mode_reask_is_not_needed_and_costs_nothing(no_provider_keys):
    llm = get_llm_provider("litellm", smoke=True)
    reply = llm.chat("x", output_schema=SCHEMA)
    assert reply.data["a"] >= 1 and reply.usage["usd_micros"] == 0
    assert llm.chat("x", tools=TOOLS).tool_calls[0]["name"] == "get_weather"


def test_litellm_structured_output_mode_is_checked():
    with pytest.raises(ValueError, match="structured_output"):
        get_llm_provider("litellm", structured_output="xml")


def test_reply_keeps_the_seed_shape_positional_and_defaults():
    usage = {"tokens_in": 1, "tokens_out": 1, "latency_ms": 0, "usd_micros": None}
    reply = LLMReply("t", "p", "m", usage)
    assert (reply.finish_reason, reply.data, reply.tool_calls) == (None, None, None)
    assert reply.to_dict() == {"text": "t", "provider": "p", "model": "m", "usage": usage, "finish_reason": None}
    with pytest.raises(ValueError, match="tool_calls"):
        LLMReply.from_dict({**reply.to_dict(), "tool_calls": [{"id": 1}]})
