"""The one wire format: every path (local run/stream/map, batch lines, errors) validates against the schema
that docs/wire.md prints; mode is explicit everywhere and defaults to live; errors survive pickling as builtins."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError

from providers.errors import ERROR_CLASSES, ProviderError, RateLimitError
from theory_modal.adapters import LocalAdapter
from theory_modal.wire import (
    DEFAULT_MODE,
    Request,
    delta_event,
    done_event,
    error_dict,
    error_from_remote,
    remote_error,
    response_dict,
    start_event,
)
from theory_modal.wire_schema import SCHEMA, validate

ROOT = Path(__file__).resolve().parents[2]


def test_the_schema_is_valid_draft_2020_12_and_docs_print_exactly_it():
    Draft202012Validator.check_schema(SCHEMA)
    doc = (ROOT / "docs" / "wire.md").read_text()
    blocks = re.findall(r"```json\n(.*?)\n```", doc, flags=re.S)
    assert json.loads(blocks[-1]) == SCHEMA, "docs/wire.md's schema block differs from theory_modal.wire_schema"


def test_a_payload_without_mode_is_live_and_says_so():
    assert Request.from_dict({"prompt": "x"}).mode == DEFAULT_MODE == "live"
    assert Request.from_dict({"prompt": "x"}).to_dict()["mode"] == "live"
    resp = LocalAdapter().run("llm/mock@1", {"prompt": "x"})
    validate("Response", resp)
    assert resp["mode"] == "live"


@pytest.mark.parametrize("ref", ["llm/mock@1", "llm/litellm@1"])
def test_local_run_stream_and_map_validate_and_carry_the_asked_mode(ref):
    adapter = LocalAdapter()
    payload = {"prompt": "schema check", "mode": "smoke"}
    resp = adapter.run(ref, payload)
    validate("Response", resp)
    assert resp["mode"] == "smoke" and resp["ref"] == ref

    events = list(adapter._call_gen(ref.split("/")[1].split("@")[0] + "_stream", payload))
    for event in events:
        validate("StreamEvent", event)
    assert [e["type"] for e in events[:1]] == ["start"] and events[0]["function_call_id"] is None
    assert [e["type"] for e in events[-1:]] == ["done"]
    assert {e["type"] for e in events[1:-1]} == {"delta"}
    assert "".join(e["text"] for e in events[1:-1]) == events[-1]["response"]["text"]
    assert events[-1]["response"]["mode"] == "smoke"

    stream = adapter.stream(ref, payload)
    assert "".join(stream) == stream.response["text"]
    validate("Response", stream.response)

    items = list(adapter.map(ref, [payload, {"prompt": ""}, {"prompt": "x", "mode": "bogus"}, {**payload, "prompt": "b"}]))
    for item in items:
        validate("MapItem", item)
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert [i["mode"] for i in items] == ["smoke", "live", "live", "smoke"]
    assert "error" in items[1] and "error" in items[2] and "error" not in items[3]


def test_the_schema_rejects_what_the_wire_must_not_carry():
    good = LocalAdapter().run("llm/mock@1", {"prompt": "x", "mode": "smoke"})
    for bad in ({**good, "mode": "fake"}, {k: v for k, v in good.items() if k != "mode"},
                {**good, "surprise": 1}, {**good, "usage": {**good["usage"], "usd_micros": -1}}):
        with pytest.raises(ValidationError):
            validate("Response", bad)
    with pytest.raises(ValidationError):
        validate("StreamEvent", {"__end__": good})  # the old stream end is gone
    with pytest.raises(ValidationError):
        validate("Error", {"type": "X", "kind": "x", "message": "m"})  # retryable is required


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=100, deadline=None)
@given(prompt=_text, mode=st.sampled_from([None, "live", "smoke"]), model=st.none() | st.just("mock"),
       temperature=st.none() | st.floats(0, 2))
def test_every_valid_request_round_trips_with_an_explicit_mode(prompt, mode, model, temperature):
    """Invariant: to_dict() always carries mode (the asked one, else live) and validates as a Request."""
    payload: dict = {"prompt": prompt}
    if mode is not None:
        payload["mode"] = mode
    if model is not None:
        payload["model"] = model
    if temperature is not None:
        payload["options"] = {"temperature": temperature}
    body = Request.from_dict(payload).to_dict()
    validate("Request", body)
    assert body["mode"] == (mode or "live")
    assert Request.from_dict(body) == Request.from_dict(payload)


def _pickled_globals(data: bytes) -> set[tuple[str, str]]:
    """Every (module, name) a pickle imports when loaded (GLOBAL, and STACK_GLOBAL after its two strings): a
    message that merely mentions "providers" is text, not an import."""
    import pickletools

    out: set[tuple[str, str]] = set()
    strings: list[str] = []
    for op, arg, _pos in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, name = arg.split(" ", 1)
            out.add((module, name))
        elif op.name == "STACK_GLOBAL":
            out.add((strings[-2], strings[-1]))
        elif isinstance(arg, str):
            strings.append(arg)
    return out


@settings(max_examples=150, deadline=None)
@given(cls=st.sampled_from(sorted(ERROR_CLASSES.values(), key=lambda c: c.__name__)), message=_text,
       provider=st.none() | st.just("litellm"), status=st.none() | st.integers(400, 599))
def test_every_provider_error_crosses_a_pickle_as_a_builtin_and_comes_back_typed(cls, message, provider, status):
    """Invariant: the remote form is a plain RuntimeError (unpicklable with builtins only) whose message is
    the original one line and whose error object validates; rebuilding gives the same class, message, kind."""
    exc = cls(message, provider=provider, status_code=status)
    remote = remote_error(exc)
    data = pickle.dumps(remote)
    assert _pickled_globals(data) <= {("builtins", "RuntimeError")}, "the remote form must need builtins only"
    back = pickle.loads(data)
    assert type(back) is RuntimeError and str(back) == error_dict(exc)["message"]
    validate("Error", back.error)
    assert back.kind == exc.kind and back.retryable == exc.retryable
    typed = error_from_remote(back)
    assert type(typed) is cls and str(typed) == str(error_dict(exc)["message"]) and typed.kind == exc.kind
    assert typed.status_code == status and typed.provider == provider


def test_rate_limit_keeps_retry_after_across_the_boundary():
    typed = error_from_remote(pickle.loads(pickle.dumps(remote_error(RateLimitError("slow down", retry_after=2.5)))))
    assert isinstance(typed, RateLimitError) and typed.retry_after == 2.5


def test_other_exceptions_pass_through_unchanged():
    for exc in (RuntimeError("plain"), ValueError("v"), KeyError("k")):
        assert error_from_remote(exc) is exc


def test_secrets_never_reach_the_error_object(monkeypatch):
    key = "sk-WIRESECRET0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    remote = remote_error(ProviderError(f"upstream said: bad key {key}"))
    assert key not in str(remote) and key not in json.dumps(remote.error) and key not in repr(pickle.dumps(remote))


def test_event_builders_validate():
    validate("StreamEvent", start_event("fc-123"))
    validate("StreamEvent", delta_event(""))
    resp = response_dict("llm/mock@1", "smoke", {"text": "t", "provider": "mock", "model": "mock",
                                                 "usage": {"tokens_in": 0, "tokens_out": 0, "latency_ms": 0, "usd_micros": None}})
    validate("StreamEvent", done_event(resp))


def test_batch_lines_validate_against_the_schema(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "a", "id": 7}\n"b"\n{"prompt": ""}\nnot json\n{"prompt": "c", "options": {"mock_error": "timeout"}}\n')
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    r = subprocess.run([sys.executable, "-m", "theory_modal", "batch", "--ref", "llm/mock@1", "--input", str(src),
                        "--output", str(tmp_path / "out.jsonl")], capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 5, r.stderr
    for line in lines:
        validate("BatchLine", line)
    assert sorted(line["line"] for line in lines) == [1, 2, 3, 4, 5]
    assert {line["mode"] for line in lines} == {"smoke"}  # the local adapter's default mode


def test_cli_help_states_the_mode_default_per_adapter(tmp_path):
    r = subprocess.run([sys.executable, "-m", "theory_modal", "run", "--help"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "smoke on the local adapter, live on the modal adapter" in text


_TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


@settings(max_examples=60, deadline=None)
@given(
    fallbacks=st.one_of(st.none(), st.lists(st.sampled_from(["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest",
                                                            "ollama_chat/qwen2.5:0.5b"]), max_size=8)),
    trace=st.one_of(st.none(), st.fixed_dictionaries({"traceparent": st.just(_TRACEPARENT)},
                                                     optional={"tracestate": st.text("abc=1,", max_size=40)})),
)
def test_every_request_the_wire_accepts_with_fallbacks_and_trace_validates_against_the_schema(fallbacks, trace):
    """Invariant: Request.from_dict(x).to_dict() always validates as a Request (the schema documents every field)."""
    payload: dict = {"prompt": "hi", "model": "openai/gpt-4o-mini"}
    if fallbacks is not None:
        payload["fallbacks"] = fallbacks
    if trace is not None:
        payload["trace"] = trace
    validate("Request", Request.from_dict(payload, provider="litellm").to_dict())


_TOOL = {"name": "weather", "description": "Current weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
_turn_text = st.text(max_size=30)
_history_item = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": _turn_text}),
    st.just("TOOL_EXCHANGE"),
    st.fixed_dictionaries({"role": st.sampled_from(["user", "tool", "robot", 5]), "content": st.one_of(_turn_text, st.integers())}),
)


def _expand(items):
    out = []
    for n, item in enumerate(items):
        if item == "TOOL_EXCHANGE":
            call = {"id": f"call_{n}", "name": "weather", "arguments": {"city": "Paris"}}
            out += [{"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": f"call_{n}", "content": '{"temp_c": 18}'}]
        else:
            out.append(item)
    return out


@settings(max_examples=120, deadline=None)
@given(
    history=st.one_of(st.none(), st.lists(_history_item, max_size=6).map(_expand)),
    schema=st.one_of(st.none(), st.just({"type": "object", "properties": {"n": {"type": "integer"}}}),
                     st.just({"type": "nonsense"}), st.integers()),
    tools=st.one_of(st.none(), st.just([_TOOL]), st.just([{"name": "bad name!"}]), st.just({})),
    tool_choice=st.one_of(st.none(), st.sampled_from(["auto", "none", "required", "weather", "other", {"name": "weather"}])),
    retries=st.one_of(st.none(), st.integers(-2, 8), st.booleans()),
)
def test_every_structured_request_is_refused_cleanly_or_validates_against_the_schema(history, schema, tools,
                                                                                       tool_choice, retries):
    """Invariant: with random history/output_schema/tools/tool_choice/output_retries, Request.from_dict either
    raises InvalidRequestError naming a ``request.`` field, or its to_dict() validates as a Request and survives
    a JSON round trip unchanged (the schema documents every structure field; nothing is silently dropped)."""
    from providers.errors import InvalidRequestError

    payload: dict = {"prompt": "hi", "model": "openai/gpt-4o-mini"}
    for key, value in (("history", history), ("output_schema", schema), ("tools", tools),
                       ("tool_choice", tool_choice), ("output_retries", retries)):
        if value is not None:
            payload[key] = value
    try:
        req = Request.from_dict(payload, provider="litellm")
    except InvalidRequestError as exc:
        assert str(exc).startswith("request."), str(exc)
        return
    out = req.to_dict()
    validate("Request", out)
    assert Request.from_dict(json.loads(json.dumps(out)), provider="litellm") == req
    for key in ("history", "output_schema", "tools"):
        if payload.get(key):
            assert key in out


def test_structured_responses_and_output_errors_validate_against_the_schema():
    """A reply with data and tool calls, and an OutputValidationError, as the wire carries them."""
    from providers.errors import OutputValidationError

    adapter = LocalAdapter()
    resp = adapter.run("llm/mock@1", {"prompt": "Weather?", "mode": "smoke", "tools": [_TOOL]})
    validate("Response", resp)
    assert resp["finish_reason"] == "tool_calls" and resp["tool_calls"][0]["arguments"]["city"]
    resp = adapter.run("llm/mock@1", {"prompt": "n?", "mode": "smoke",
                                      "output_schema": {"type": "object", "properties": {"n": {"type": "integer"}},
                                                        "required": ["n"]}})
    validate("Response", resp)
    assert isinstance(resp["data"]["n"], int) and json.loads(resp["text"]) == resp["data"]
    err = OutputValidationError("reply did not validate", raw_text='{"oops": ',
                                usage={"tokens_in": 3, "tokens_out": 2, "latency_ms": 1, "usd_micros": None})
    validate("Error", error_dict(err))
    with pytest.raises(ValidationError):
        validate("Request", {"prompt": "x", "tools": [{"name": "a", "extra": 1}]})
