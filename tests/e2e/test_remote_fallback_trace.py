"""Fallbacks and trace context across the Modal boundary, through the emulator's real container processes.

Containers write their spans to a file (``THEORY_MODAL_OTEL_FILE`` from the emulator's secret); the caller
records its own spans in memory. The remote call's span must be a child of the caller's span: same trace id,
and its parent is the caller's span id.
"""

from __future__ import annotations

import json
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from providers import ModelNotFoundError, ProviderUnavailableError, telemetry
from theory_modal.adapters import AdapterProvider, ModalAdapter

PRIMARY, FALLBACK = "openai/error-404", "openai/gpt-4o-mini"


@pytest.fixture
def caller_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure(tracer_provider=provider, enabled=True)
    yield provider, exporter
    telemetry.configure(tracer_provider=None)


def remote_spans(path, trace_id: str, want: int = 1, wait_s: float = 10.0) -> list[dict]:
    """The container spans of one trace (the exporter writes when a span ends, just after the reply)."""
    deadline = time.monotonic() + wait_s
    while True:
        spans = []
        if path.exists():
            for line in path.read_text().splitlines():
                span = json.loads(line)
                if span["context"]["trace_id"] == trace_id:
                    spans.append(span)
        if len(spans) >= want or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def hex_id(n: int, width: int) -> str:
    return "0x" + format(n, f"0{width}x")


def test_remote_fallback_answers_with_the_second_model(modal_client, e2e_fake_llm):
    e2e_fake_llm.reset()
    resp = ModalAdapter().run("llm/litellm@1", {"prompt": "fall back", "mode": "live", "model": PRIMARY,
                                                "fallbacks": [FALLBACK]})
    assert resp["model"] == FALLBACK and resp["text"] == "echo: fall back"
    assert [r["body"]["model"] for r in e2e_fake_llm.requests if r["path"].endswith("/chat/completions")] == [
        "error-404", "gpt-4o-mini"]


def test_remote_all_failing_keeps_attempted_across_the_boundary(modal_client):
    with pytest.raises(ProviderUnavailableError) as info:
        ModalAdapter().run("llm/litellm@1", {"prompt": "x", "mode": "live", "model": PRIMARY,
                                             "fallbacks": ["openai/error-502"]})
    assert [a["model"] for a in info.value.attempted] == [PRIMARY, "openai/error-502"]
    assert PRIMARY in str(info.value) and "openai/error-502" in str(info.value)


def test_remote_stream_falls_back_before_the_first_chunk(modal_client):
    llm = AdapterProvider(ModalAdapter(), "llm/litellm@1", mode="live")
    stream = llm.stream_chat("stream fall back", model=PRIMARY, fallbacks=[FALLBACK])
    assert "".join(stream) == "echo: stream fall back"
    assert stream.reply.model == FALLBACK


def test_the_remote_span_is_a_child_of_the_callers_span(modal_client, container_spans, caller_spans):
    tracer_provider, exporter = caller_spans
    llm = AdapterProvider(ModalAdapter(), "llm/litellm@1", mode="live")
    reply = llm.chat("trace me", model=PRIMARY, fallbacks=[FALLBACK])
    assert reply.model == FALLBACK
    [caller] = exporter.get_finished_spans()
    assert caller.name == f"chat {PRIMARY}"
    trace_id = hex_id(caller.context.trace_id, 32)
    [remote] = remote_spans(container_spans, trace_id)
    assert remote["name"] == f"chat {PRIMARY}"
    assert remote["parent_id"] == hex_id(caller.context.span_id, 16)
    assert remote["context"]["span_id"] != hex_id(caller.context.span_id, 16)
    assert remote["kind"] == "SpanKind.CLIENT"
    attrs = remote["attributes"]
    assert attrs["gen_ai.response.model"] == FALLBACK and attrs["theory_modal.ref"] == "llm/litellm@1"
    assert attrs["theory_modal.mode"] == "live"
    assert [e["attributes"]["theory_modal.fallback.to_model"] for e in remote["events"]
            if e["name"] == "theory_modal.fallback"] == [FALLBACK]
    assert "trace me" not in json.dumps(remote)


def test_a_remote_stream_span_is_a_child_too_and_a_failure_is_recorded(modal_client, container_spans, caller_spans):
    tracer_provider, exporter = caller_spans
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller-work") as parent:
        run = ModalAdapter().stream("llm/litellm@1", {"prompt": "s", "mode": "live"})
        "".join(run)
        with pytest.raises(ModelNotFoundError):
            ModalAdapter().run("llm/litellm@1", {"prompt": "x", "mode": "live", "model": PRIMARY})
    trace_id = hex_id(parent.get_span_context().trace_id, 32)
    spans = remote_spans(container_spans, trace_id, want=2)
    assert len(spans) == 2
    assert {s["parent_id"] for s in spans} == {hex_id(parent.get_span_context().span_id, 16)}
    failed = [s for s in spans if s["status"]["status_code"] == "ERROR"]
    assert [s["attributes"]["error.type"] for s in failed] == ["ModelNotFoundError"]
    streamed = [s for s in spans if s["attributes"].get("gen_ai.request.stream")]
    assert len(streamed) == 1 and streamed[0]["attributes"]["gen_ai.usage.output_tokens"] > 0
