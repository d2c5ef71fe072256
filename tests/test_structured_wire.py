"""Conversations, schemas and tools as wire fields: the request format, map, streams and the CLI."""

from __future__ import annotations

import json

import pytest
from jsonschema import validators

from contract import PERSON_SCHEMA, WEATHER_TOOLS
from providers import InvalidRequestError
from theory_modal.adapters import get_adapter
from theory_modal.wire import Request

from test_cli import cli

HISTORY = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_request_carries_every_structure_field_through_a_json_round_trip():
    payload = {"prompt": "p", "mode": "smoke", "history": HISTORY, "output_schema": PERSON_SCHEMA,
               "tools": WEATHER_TOOLS, "tool_choice": "get_time", "output_retries": 2}
    body = Request.from_dict(json.loads(json.dumps(payload))).to_dict()
    assert body["history"] == HISTORY and body["output_schema"] == PERSON_SCHEMA
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tool_choice"] == {"name": "get_time"} and body["output_retries"] == 2
    assert Request.from_dict(body).to_dict() == body, "normalized bodies are fixed points"


@pytest.mark.parametrize("field, value, fragment", [
    ("history", [{"role": "bot", "content": "x"}], "request.history[0]['role']"),
    ("history", "hi", "request.history must be a list"),
    ("output_schema", {"type": "nonsense"}, "request.output_schema is not a valid JSON Schema"),
    ("output_schema", "Person", "request.output_schema must be a JSON Schema object"),
    ("tools", [{"name": "x y"}], "request.tools[0]['name']"),
    ("tool_choice", "auto", "request.tool_choice was given without tools"),
    ("output_retries", 99, "request.output_retries must be an int from 0 to 5"),
])
def test_bad_structure_fields_are_named_in_the_error(field, value, fragment):
    with pytest.raises(InvalidRequestError) as info:
        Request.from_dict({"prompt": "p", field: value})
    assert fragment in str(info.value)


def test_map_gives_each_item_its_data_or_tool_calls_and_one_bad_item_costs_nothing():
    payloads = [
        {"prompt": "Describe Ada", "mode": "smoke", "output_schema": PERSON_SCHEMA},
        {"prompt": "Weather?", "mode": "smoke", "tools": WEATHER_TOOLS},
        {"prompt": "bad", "mode": "smoke", "history": [{"role": "tool", "content": "x", "tool_call_id": "c"}]},
        {"prompt": "and?", "mode": "smoke", "history": HISTORY},
    ]
    results = list(get_adapter("local").map("llm/mock@1", payloads))
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert validators.validator_for(PERSON_SCHEMA)(PERSON_SCHEMA).is_valid(results[0]["data"])
    assert results[1]["tool_calls"][0]["name"] == "get_weather" and results[1]["finish_reason"] == "tool_calls"
    assert results[2]["error"]["kind"] == "invalid_request" and "history" in results[2]["error"]["message"]
    assert results[3]["text"] == "mock reply to: and? [after 2 turns]"


def test_local_stream_ends_with_a_response_that_carries_the_data():
    stream = get_adapter("local").stream("llm/litellm@1", {"prompt": "Describe Ada", "mode": "smoke",
                                                           "output_schema": PERSON_SCHEMA})
    text = "".join(stream)
    assert json.loads(text) == stream.response["data"]
    assert stream.response["finish_reason"] == "stop"


def test_a_schema_the_mock_cannot_satisfy_is_refused_for_that_item_only():
    resp = list(get_adapter("local").map("llm/mock@1", [
        {"prompt": "x", "mode": "smoke", "output_schema": {"type": "string", "pattern": "^a+$"}},
        {"prompt": "y", "mode": "smoke"},
    ]))
    assert resp[0]["error"]["kind"] == "invalid_request" and "pattern" in resp[0]["error"]["message"]
    assert resp[1]["text"] == "mock reply to: y"


@pytest.fixture
def live_local(fake_llm, no_provider_keys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-wire-0000000")
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
    from theory_modal import handlers

    handlers._providers.clear()
    yield get_adapter("local")
    handlers._providers.clear()


def test_output_validation_error_crosses_the_adapter_with_raw_text_and_summed_usage(live_local, fake_llm):
    fake_llm.script("json-invalid", "json-invalid", "json-invalid")
    (item,) = list(live_local.map("llm/litellm@1", [{"prompt": "x", "mode": "live", "output_schema": PERSON_SCHEMA,
                                                     "output_retries": 2}]))
    err = item["error"]
    assert err["type"] == "OutputValidationError" and err["kind"] == "output_invalid" and err["attempts"] == 3
    assert err["raw_text"] == '{"oops": ' and err["usage"]["tokens_out"] == 3
    assert len(fake_llm.requests) == 3


def test_live_reask_through_the_adapter_returns_data_and_sums_usage(live_local, fake_llm):
    fake_llm.script("json-invalid")
    resp = live_local.run("llm/litellm@1", {"prompt": "x", "mode": "live", "output_schema": PERSON_SCHEMA})
    assert validators.validator_for(PERSON_SCHEMA)(PERSON_SCHEMA).is_valid(resp["data"])
    bodies = [r["body"] for r in fake_llm.requests]
    assert len(bodies) == 2
    assert resp["usage"]["tokens_in"] == sum(
        sum(len(str(m.get("content") or "").split()) for m in b["messages"]) for b in bodies
    )


# ------------------------------------------------------------------------------------------- CLI
def test_cli_schema_prints_the_validated_data(tmp_path):
    (tmp_path / "person.json").write_text(json.dumps(PERSON_SCHEMA))
    r = cli(tmp_path, "run", "--prompt", "Describe Ada", "--schema", "person.json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert validators.validator_for(PERSON_SCHEMA)(PERSON_SCHEMA).is_valid(data)
    whole = json.loads(cli(tmp_path, "run", "--prompt", "Describe Ada", "--schema", "person.json", "--json").stdout)
    assert whole["data"] == data and json.loads(whole["text"]) == data and whole["finish_reason"] == "stop"


def test_cli_history_is_sent_before_the_prompt(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps(HISTORY))
    r = cli(tmp_path, "run", "--ref", "llm/mock@1", "--prompt", "and?", "--history", "h.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "mock reply to: and? [after 2 turns]"


@pytest.mark.parametrize("flag, content, fragment", [
    ("--schema", None, "cannot read it"),
    ("--schema", "{not json", "not valid JSON"),
    ("--schema", '{"type": "nonsense"}', "output_schema is not a valid JSON Schema"),
    ("--history", '[{"role": "bot", "content": "x"}]', "history[0]['role']"),
    ("--history", '{"role": "user"}', "history must be a list"),
])
def test_cli_bad_schema_or_history_file_exits_2_with_one_line(tmp_path, flag, content, fragment):
    if content is not None:
        (tmp_path / "f.json").write_text(content)
    r = cli(tmp_path, "run", flag, "f.json")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr
