"""Fallbacks and trace context on the wire: the request fields, the local adapter, ``map``, the CLI flags,
and the caller -> handler span link in one process (the emulator test proves it across processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from providers import InvalidRequestError, ModelNotFoundError, telemetry
from theory_modal.adapters import AdapterProvider, LocalAdapter
from theory_modal.wire import FIELDS, Request

KEY = "sk-test-key-wire-123456"
PRIMARY, FALLBACK = "openai/error-404", "openai/gpt-4o-mini"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def live_env(fake_llm, no_provider_keys, monkeypatch):
    """The local adapter's LiteLLM provider (live mode) talks to the fake server through the standard env vars."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
    return fake_llm


def asked(fake_llm) -> list[str]:
    return [r["body"]["model"] for r in fake_llm.requests if r["path"].endswith("/chat/completions")]


# ------------------------------------------------------------------ the request fields
def test_request_carries_fallbacks_and_trace_and_round_trips():
    req = Request.from_dict({"prompt": "hi", "model": PRIMARY, "fallbacks": [FALLBACK],
                             "trace": {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}})
    assert req.fallbacks == (FALLBACK,) and req.trace == {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    assert Request.from_dict(req.to_dict()) == req
    assert "fallbacks" not in Request.from_dict({"prompt": "hi"}).to_dict()
    assert Request.from_dict({"prompt": "hi", "fallbacks": []}).to_dict()["fallbacks"] == []  # "none", explicitly
    assert {"fallbacks", "trace"} <= set(FIELDS)


@pytest.mark.parametrize("fallbacks, needle", [
    ("openai/gpt-4o", "request.fallbacks must be a list"),
    ([1], r"request.fallbacks\[0\] must be a model string"),
    (["bad model"], r"request.fallbacks\[0\]"),
    ([f"openai/m{i}" for i in range(9)], "at most 8"),
])
def test_bad_fallbacks_are_refused_naming_the_field(fallbacks, needle):
    with pytest.raises(InvalidRequestError, match=needle):
        Request.from_dict({"prompt": "hi", "fallbacks": fallbacks})


@pytest.mark.parametrize("trace", [
    "00-abc", {"traceparent": "00-XYZ"}, {"traceparent": TRACEPARENT, "baggage": "x"},
    {"traceparent": TRACEPARENT.upper()}, {"traceparent": TRACEPARENT, "tracestate": "x" * 600},
    {"traceparent": TRACEPARENT, "tracestate": "a\nb"},
])
def test_bad_trace_context_is_refused(trace):
    with pytest.raises(InvalidRequestError, match="request.trace"):
        Request.from_dict({"prompt": "hi", "trace": trace})


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=80), st.integers(), st.lists(st.text(max_size=20), max_size=3),
                 st.dictionaries(st.sampled_from(["traceparent", "tracestate", "x"]),
                                 st.one_of(st.text(max_size=80), st.from_regex(
                                     r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", fullmatch=True)),
                                 max_size=3)))
def test_any_trace_value_is_accepted_as_w3c_or_refused_as_invalid_request(trace):
    """Invariant: a request's trace is either a valid W3C context (kept exactly) or an InvalidRequestError."""
    try:
        req = Request.from_dict({"prompt": "hi", "trace": trace})
    except InvalidRequestError as exc:
        assert "request.trace" in str(exc)
        return
    if trace is None:
        assert req.trace is None
    else:
        assert req.trace["traceparent"] == trace["traceparent"] and set(req.trace) <= {"traceparent", "tracestate"}


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=30), st.lists(st.one_of(st.text(max_size=30), st.integers()), max_size=10)))
def test_any_fallbacks_value_is_a_clean_chain_or_an_invalid_request(fallbacks):
    """Invariant: fallbacks are a list of model strings without whitespace, at most 8, or the request is refused."""
    try:
        req = Request.from_dict({"prompt": "hi", "fallbacks": fallbacks})
    except InvalidRequestError as exc:
        assert "request.fallbacks" in str(exc)
        return
    assert fallbacks is None or (isinstance(fallbacks, list) and len(fallbacks) <= 8)
    for model in req.fallbacks or ():
        assert isinstance(model, str) and model.strip() and not any(c.isspace() for c in model)


# ------------------------------------------------------------------ through the local adapter
def test_local_adapter_run_falls_back(live_env):
    resp = LocalAdapter().run("llm/litellm@1", {"prompt": "hi", "mode": "live", "model": PRIMARY, "fallbacks": [FALLBACK]})
    assert resp["model"] == FALLBACK and resp["text"] == "echo: hi"
    assert asked(live_env) == ["error-404", "gpt-4o-mini"]


def test_local_adapter_stream_falls_back(live_env):
    run = LocalAdapter().stream("llm/litellm@1", {"prompt": "a b c", "mode": "live", "model": PRIMARY,
                                                  "fallbacks": [FALLBACK]})
    assert "".join(run) == "echo: a b c" and run.response["model"] == FALLBACK


def test_map_falls_back_per_item_and_a_failed_item_lists_what_was_tried(live_env):
    payloads = [{"prompt": "one", "mode": "live", "model": PRIMARY, "fallbacks": [FALLBACK]},
                {"prompt": "two", "mode": "live", "model": PRIMARY, "fallbacks": ["openai/error-401"]},
                {"prompt": "three", "mode": "live", "fallbacks": ["bad model"]}]
    results = list(LocalAdapter().map("llm/litellm@1", payloads, concurrency=2))
    assert results[0]["model"] == FALLBACK
    err = results[1]["error"]
    assert err["kind"] == "credentials" and [a["model"] for a in err["attempted"]] == [PRIMARY, "openai/error-401"]
    assert KEY not in json.dumps(err)
    assert results[2]["error"]["kind"] == "invalid_request" and "request.fallbacks[0]" in results[2]["error"]["message"]


def test_adapter_provider_sends_fallbacks_in_the_request(live_env):
    llm = AdapterProvider(LocalAdapter(), "llm/litellm@1", mode="live")
    assert llm.chat("hi", model=PRIMARY, fallbacks=[FALLBACK]).model == FALLBACK
    with pytest.raises(ModelNotFoundError) as info:
        llm.chat("hi", model=PRIMARY, fallbacks=[])
    assert info.value.attempted is None  # no chain: the model's own error, untouched


def test_the_handler_span_is_a_child_of_the_adapter_providers_span(live_env):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure(tracer_provider=provider, enabled=True)
    try:
        llm = AdapterProvider(LocalAdapter(), "llm/litellm@1", mode="live")
        llm.chat("hi", model=PRIMARY, fallbacks=[FALLBACK])
        "".join(llm.stream_chat("hi"))
    finally:
        telemetry.configure(tracer_provider=None)
    spans = exporter.get_finished_spans()
    handler_chat, caller_chat, handler_stream, caller_stream = spans
    for handler, caller in ((handler_chat, caller_chat), (handler_stream, caller_stream)):
        assert handler.parent is not None and handler.parent.span_id == caller.context.span_id
        assert handler.context.trace_id == caller.context.trace_id
        assert handler.attributes["theory_modal.ref"] == "llm/litellm@1"
        assert "theory_modal.ref" not in caller.attributes
    assert handler_chat.attributes["gen_ai.response.model"] == caller_chat.attributes["gen_ai.response.model"] == FALLBACK


# ------------------------------------------------------------------ the CLI
def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE")) and not k.startswith("MODAL_")}
    base.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "absent.toml"), NO_COLOR="1", **env)
    return subprocess.run([sys.executable, "-m", "theory_modal", *args], capture_output=True, text=True, env=base,
                          cwd=tmp_path, timeout=120)


def test_cli_run_fallback_flag_is_repeatable_and_used_in_order(tmp_path, fake_llm):
    r = _cli(tmp_path, "run", "--mode", "live", "-m", PRIMARY, "--fallback", "openai/error-401",
             "--fallback", FALLBACK, "--prompt", "cli", "--json", OPENAI_API_KEY=KEY, OPENAI_API_BASE=fake_llm.openai_base)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == FALLBACK
    assert asked(fake_llm) == ["error-404", "error-401", "gpt-4o-mini"]


def test_cli_bad_fallback_exits_2_with_one_line(tmp_path):
    r = _cli(tmp_path, "run", "--fallback", "has space")
    assert r.returncode == 2 and "fallbacks[0]" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_batch_fallback_flag_applies_to_lines_without_their_own(tmp_path, fake_llm):
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"prompt": "one", "model": PRIMARY}) + "\n"
        + json.dumps({"prompt": "two", "model": PRIMARY, "fallbacks": []}) + "\n")
    r = _cli(tmp_path, "batch", "--mode", "live", "--input", "in.jsonl", "--output", "out.jsonl",
             "--fallback", FALLBACK, OPENAI_API_KEY=KEY, OPENAI_API_BASE=fake_llm.openai_base)
    assert r.returncode == 1, r.stderr  # the second line opted out of fallbacks and failed
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    by_line = {o["line"]: o for o in out}  # 1-based input line numbers
    assert by_line[1]["model"] == FALLBACK
    assert by_line[2]["error"]["kind"] == "model_not_found"
