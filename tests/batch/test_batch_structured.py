"""Batch lines carry the conversation, structured output and tool fields like any request: each output line has
its ``data`` / ``tool_calls``, a bad field costs only its own line, and ``--resume`` re-runs a line whose schema,
tools or history changed (they are part of the fingerprint)."""

from __future__ import annotations

import json

from batch_helpers import by_line, read_rows, run_engine

from theory_modal.wire_schema import validate

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "tag": {"type": "string"}}, "required": ["n"]}
TOOL = {"name": "weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = {"id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}
HISTORY = [{"role": "user", "content": "Weather in Paris?"},
           {"role": "assistant", "content": None, "tool_calls": [CALL]},
           {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'}]


def _lines(*rows) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def test_structured_fields_in_batch_lines_each_answered_and_bad_ones_cost_only_their_line(tmp_path):
    rows = [
        {"id": "schema", "prompt": "count", "output_schema": SCHEMA},
        {"id": "tool", "prompt": "Weather in Paris?", "tools": [TOOL]},
        {"id": "followup", "prompt": "Answer with the tool's result.", "tools": [TOOL], "history": HISTORY},
        {"id": "bad-history", "prompt": "x", "history": [{"role": "tool", "tool_call_id": "nope", "content": "1"}]},
        {"id": "bad-choice", "prompt": "x", "tools": [TOOL], "tool_choice": "not_a_tool"},
    ]
    s = run_engine(tmp_path, _lines(*rows))
    assert s.ok == 3 and s.failed == 2
    out = by_line(read_rows(tmp_path / "out.jsonl"))
    for row in out.values():
        validate("BatchLine", row)
    assert isinstance(out[1]["data"]["n"], int) and json.loads(out[1]["text"]) == out[1]["data"]
    assert out[2]["finish_reason"] == "tool_calls" and out[2]["tool_calls"][0]["name"] == "weather"
    assert isinstance(out[2]["tool_calls"][0]["arguments"]["city"], str)
    assert "tool_calls" not in out[3] or out[3]["finish_reason"] == "tool_calls"
    assert out[4]["error"]["kind"] == "invalid_request" and "history" in out[4]["error"]["message"]
    assert out[5]["error"]["kind"] == "invalid_request" and "tool_choice" in out[5]["error"]["message"]


def test_resume_reruns_a_line_whose_schema_tools_or_history_changed(tmp_path):
    rows = [
        {"prompt": "a", "output_schema": SCHEMA},
        {"prompt": "b", "tools": [TOOL]},
        {"prompt": "c", "history": [{"role": "user", "content": "earlier"}]},
        {"prompt": "d", "output_schema": SCHEMA},
    ]
    first = run_engine(tmp_path, _lines(*rows))
    assert first.ok == 4
    changed = [dict(r) for r in rows]
    changed[0]["output_schema"] = {**SCHEMA, "required": ["n", "tag"]}
    changed[1]["tools"] = [{**TOOL, "description": "Weather, in Celsius"}]
    changed[2]["history"] = [{"role": "user", "content": "earlier, edited"}]
    again = run_engine(tmp_path, _lines(*changed), resume=True)
    assert again.kept == 1 and again.ok == 3, "only the unchanged line 4 may keep its reply"
    out = by_line(read_rows(tmp_path / "out.jsonl"))
    assert set(out) == {1, 2, 3, 4}
    assert set(out[1]["data"]) >= {"n", "tag"}, "line 1 was answered for its new schema"


def test_paid_attempts_of_a_failed_structured_line_count_towards_max_usd(tmp_path, fake_llm, monkeypatch):
    """An item that fails validation after its re-asks was paid for (its error carries the summed usage): the
    run's spend and --max-usd count it, so a batch whose every line fails cannot spend without bound."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch-0000000000")
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
    fake_llm.script(*["json-invalid"] * 80)
    rows = [{"prompt": f"item {i}", "output_schema": SCHEMA} for i in range(20)]
    s = run_engine(tmp_path, _lines(*rows), ref="llm/litellm@1", mode="live",
                   defaults={"model": "openai/gpt-4o-mini"}, max_usd=0.00002, concurrency=1)
    out = read_rows(tmp_path / "out.jsonl")
    assert out and all(r["error"]["kind"] == "output_invalid" for r in out)
    spent = sum(r["error"]["usage"]["usd_micros"] for r in out)
    assert spent > 0 and s.usd_micros == spent
    assert s.tokens_in == sum(r["error"]["usage"]["tokens_in"] for r in out)
    assert s.stopped == "max_usd" and s.failed < 20 and s.usd_micros <= 20
