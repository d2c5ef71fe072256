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


@settings(max_examples=150, deadline=None)
@given(cls=st.sampled_from(sorted(ERROR_CLASSES.values(), key=lambda c: c.__name__)), message=_text,
       provider=st.none() | st.just("litellm"), status=st.none() | st.integers(400, 599))
def test_every_provider_error_crosses_a_pickle_as_a_builtin_and_comes_back_typed(cls, message, provider, status):
    """Invariant: the remote form is a plain RuntimeError (unpicklable with builtins only) whose message is
    the original one line and whose error object validates; rebuilding gives the same class, message, kind."""
    exc = cls(message, provider=provider, status_code=status)
    remote = remote_error(exc)
    data = pickle.dumps(remote)
    assert b"providers" not in data and b"theory_modal" not in data
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
