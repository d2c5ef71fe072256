"""Conversations, structured output and tool calls: the fast path and plain LiteLLM send the same requests and
give the same replies (data, tool calls, finish reasons), re-asks and give-ups included."""

from __future__ import annotations

import pytest
from harness import CALLS, assert_same, both

from contract import PERSON_SCHEMA, WEATHER_TOOLS
from test_fast_path_differential import KEY, kw

STRICT = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
HISTORY = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
]
CASES = {
    "schema": ({"output_schema": PERSON_SCHEMA}, ()),
    "strict-schema": ({"output_schema": STRICT}, ()),
    "reask": ({"output_schema": STRICT}, ("json-invalid",)),
    "give-up": ({"output_schema": STRICT}, ("json-invalid", "json-invalid")),
    "tools": ({"tools": WEATHER_TOOLS}, ()),
    "tool-choice": ({"tools": WEATHER_TOOLS, "tool_choice": "get_time"}, ()),
    "tool-reask": ({"tools": WEATHER_TOOLS}, ("tool-invalid",)),
    "tool-result": ({"tools": WEATHER_TOOLS, "history": HISTORY}, ()),
    "history": ({"history": HISTORY[:2] + [{"role": "assistant", "content": "Sunny."}], "system": "S"}, ()),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_structured_calls_are_identical_on_both_paths(case, call, fake_llm, paths, no_provider_keys):
    call_kw, script = CASES[case]
    fast, lite = both(call, fake_llm, paths, prompt="Tell me", provider_kw=kw(fake_llm.openai_base),
                      call_kw=call_kw, script=script)
    assert_same(fast, lite)
    streamed_give_up = call.endswith("stream_chat") and case in ("reask", "give-up", "tool-reask")
    if case == "give-up" or streamed_give_up:
        assert fast.error is not None and fast.error[0] == "OutputValidationError"
    else:
        assert fast.error is None, fast.error
        assert (fast.reply.get("data") is not None) == ("output_schema" in call_kw)
        assert (fast.reply.get("tool_calls") is not None) == (case in ("tools", "tool-choice", "tool-reask"))
    assert KEY not in repr(fast.requests)
