"""Attacks on what a model (or a hostile upstream) sends back, and on the tool loop built on it.

Invariants searched:

1. A reply's ``tool_calls`` can always be sent back as the next call's ``history`` (with one tool turn per
   call): whatever ids the upstream chose (missing, repeated, too long, spaces, slashes), and however deep its
   arguments; a reply that could not be continued is no reply.
2. ``reply.data`` and ``reply.tool_calls`` are text a strict UTF-8 JSON writer can output (CLI, batch, wire):
   a lone surrogate escape in the model's JSON is a re-ask, never data no writer can encode.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import OutputValidationError
from providers.mock import MockProvider
from providers.request import check_history

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [{"name": "f", "parameters": {"type": "object"}}, {"name": "g", "parameters": {"type": "object"}}]

ids = st.one_of(st.none(), st.text(max_size=140), st.sampled_from(["call_0", "call_1", "a", "call 1", "x" * 129]))


def _continue(reply) -> list[dict]:
    return [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": reply.text or None, "tool_calls": reply.tool_calls},
        *({"role": "tool", "tool_call_id": c["id"], "content": "done"} for c in reply.tool_calls),
    ]


@SETTINGS
@given(call_ids=st.lists(ids, min_size=1, max_size=4), names=st.lists(st.sampled_from(["f", "g"]), min_size=4))
def test_reply_tool_calls_always_pass_back_as_history(call_ids, names):
    """Invariant 1, ids: any upstream ids give a reply whose tool_calls the next call accepts as history."""
    mock = MockProvider()
    mock.enqueue({"tool_calls": [{"id": cid, "name": names[i], "arguments": {"i": i}} for i, cid in enumerate(call_ids)]})
    reply = mock.chat("hi", tools=TOOLS)
    assert [c["arguments"] for c in reply.tool_calls] == [{"i": i} for i in range(len(call_ids))]
    check_history(_continue(reply))
    assert mock.chat("next", history=_continue(reply), tools=TOOLS).finish_reason == "stop"


def test_valid_upstream_ids_are_kept():
    mock = MockProvider().enqueue({"tool_calls": [{"id": "call_abc", "name": "f"}, {"id": "toolu_01:x.y", "name": "g"}]})
    assert [c["id"] for c in mock.chat("hi", tools=TOOLS).tool_calls] == ["call_abc", "toolu_01:x.y"]


def test_tool_arguments_too_deep_for_history_are_reasked_then_refused():
    """Invariant 1, depth: arguments history would refuse are a re-ask (then OutputValidationError), not a reply."""
    deep: dict = {"v": 1}
    for _ in range(100):
        deep = {"a": deep}
    mock = MockProvider().enqueue({"tool_calls": [{"name": "f", "arguments": deep}]},
                                  {"tool_calls": [{"name": "f", "arguments": {"ok": 1}}]})
    reply = mock.chat("hi", tools=TOOLS)
    assert reply.tool_calls[0]["arguments"] == {"ok": 1}
    mock.enqueue({"tool_calls": [{"name": "f", "arguments": deep}]})
    try:
        mock.chat("hi", tools=TOOLS, output_retries=0)
    except OutputValidationError as exc:
        assert "nested" in str(exc)
    else:
        raise AssertionError("a too-deep call was returned as a reply")


@SETTINGS
@given(code=st.integers(0xD800, 0xDFFF), where=st.sampled_from(["schema", "tool"]))
def test_a_lone_surrogate_in_model_json_is_a_reask_and_outputs_stay_utf8(code, where):
    """Invariant 2: the first (lone-surrogate) answer is re-asked; the reply that comes back encodes as UTF-8."""
    bad = '{"a": "x\\u%04x"}' % code
    mock = MockProvider()
    if where == "schema":
        mock.enqueue(bad, '{"a": "fine"}')
        reply = mock.chat("hi", output_schema={"type": "object"})
        assert reply.data == {"a": "fine"}
    else:
        mock.enqueue({"tool_calls": [{"name": "f", "arguments": bad}]}, {"tool_calls": [{"name": "f", "arguments": {}}]})
        reply = mock.chat("hi", tools=TOOLS)
        assert reply.tool_calls[0]["arguments"] == {}
    json.dumps(reply.to_dict(), ensure_ascii=False).encode("utf-8")


def test_a_surrogate_pair_is_text_and_accepted():
    mock = MockProvider().enqueue('{"a": "\\ud83d\\ude00"}')
    assert mock.chat("hi", output_schema={"type": "object"}).data == {"a": "\U0001F600"}
