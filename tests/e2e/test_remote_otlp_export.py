"""Container spans reach an OTLP/HTTP collector through the emulator's real container processes.

The emulator's secret carries ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a loopback collector started by the test session)
and ``OTEL_EXPORTER_OTLP_HEADERS`` (a collector key) into every container, as a Modal Secret would in a
deployment. The collector decodes the protobuf bodies the real exporter sends. The remote span must be a child
of the caller's span, carry the GenAI attributes, and hold no prompt text; the key must reach the collector as
a header and never the container's output.
"""

from __future__ import annotations

import pytest
from e2e_settings import OTLP_KEY
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from providers import telemetry
from providers.redact import MIN_FRAGMENT
from theory_modal.adapters import AdapterProvider, ModalAdapter

PROMPT = "the amber octopus counts to seven"


@pytest.fixture
def caller_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure(tracer_provider=provider, enabled=True)
    yield provider, exporter
    telemetry.configure(tracer_provider=None)


def _fragments(text: str) -> set[str]:
    return {text[i:i + MIN_FRAGMENT] for i in range(len(text) - MIN_FRAGMENT + 1)}


@pytest.mark.parametrize("ref", ["llm/litellm@1", "llm/mock@1"])
def test_the_container_span_reaches_the_collector_as_a_child_of_the_callers_span(
        modal_client, caller_spans, otlp_collector, emulator, ref):
    _, exporter = caller_spans
    llm = AdapterProvider(ModalAdapter(), ref, mode="live")
    reply = llm.chat(PROMPT, temperature=0.2)
    [caller] = exporter.get_finished_spans()
    trace_id = format(caller.context.trace_id, "032x")

    [remote] = otlp_collector.wait_for_spans(lambda s: s["trace_id"] == trace_id)
    assert remote["parent_span_id"] == format(caller.context.span_id, "016x")
    assert remote["span_id"] != format(caller.context.span_id, "016x")
    assert remote["kind"] == 3 and remote["name"] == caller.name  # CLIENT, "chat {model}"
    attrs = remote["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == ("openai" if "litellm" in ref else "mock")
    assert attrs["gen_ai.request.model"] == caller.attributes["gen_ai.request.model"]
    assert attrs["gen_ai.response.model"] == reply.model
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["theory_modal.ref"] == ref and attrs["theory_modal.mode"] == "live"
    assert remote["resource"]["service.name"] == "theory-modal"

    bodies = otlp_collector.requests("/v1/traces")
    assert bodies and all(r.error is None for r in bodies)
    assert all(r.headers.get("x-collector-key") == OTLP_KEY for r in bodies)  # the key went where it belongs
    assert not any(PROMPT.encode() in r.body or reply.text.encode() in r.body for r in bodies)

    output = emulator.app_logs("theory")
    assert not (_fragments(OTLP_KEY) & _fragments(output)), "a piece of the collector key reached container output"
    assert PROMPT not in output


def test_a_remote_stream_and_a_remote_failure_are_exported_too(modal_client, caller_spans, otlp_collector):
    from providers import ModelNotFoundError

    tracer_provider, _ = caller_spans
    with tracer_provider.get_tracer("test").start_as_current_span("caller-work") as parent:
        "".join(ModalAdapter().stream("llm/litellm@1", {"prompt": PROMPT, "mode": "live"}))
        with pytest.raises(ModelNotFoundError):
            ModalAdapter().run("llm/litellm@1", {"prompt": PROMPT, "mode": "live", "model": "openai/error-404"})
    trace_id = format(parent.get_span_context().trace_id, "032x")
    spans = otlp_collector.wait_for_spans(lambda s: s["trace_id"] == trace_id, want=2)
    assert len(spans) == 2
    assert {s["parent_span_id"] for s in spans} == {format(parent.get_span_context().span_id, "016x")}
    [streamed] = [s for s in spans if s["attributes"].get("gen_ai.request.stream")]
    assert streamed["attributes"]["gen_ai.usage.output_tokens"] > 0
    [failed] = [s for s in spans if s["status_code"] == 2]  # STATUS_CODE_ERROR
    assert failed["attributes"]["error.type"] == "ModelNotFoundError"
    assert PROMPT not in repr(spans)


@pytest.mark.slow
def test_spans_still_queued_in_a_container_are_exported_when_the_container_goes_away(tmp_path, monkeypatch):
    """With THEORY_MODAL_OTEL_FLUSH=exit and a ten-minute batch delay nothing leaves during the input; when the
    container is retired (a redeploy: it gets the kill switch and exits, as on a scale-down) the SDK's
    exit-time shutdown exports the span. Own emulator: the session one flushes every input."""
    import os

    from e2e_settings import ROOT, SECRET_NAME

    from theory_modal.testing.emulator import ModalEmulator
    from theory_modal.testing.emulator.fixtures import reset_modal_client
    from theory_modal.testing.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as collector:
        secrets = {SECRET_NAME: {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "THEORY_MODAL_OTEL_FLUSH": "exit",
                                 "OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_METRIC_EXPORT_INTERVAL": "600000"}}
        emu = ModalEmulator(secrets=secrets, state_dir=tmp_path / "emulator")
        emu.start()
        try:
            emu.deploy(ROOT / "deploy.py", env={"THEORY_MODAL_SECRETS": SECRET_NAME})
            for key in list(os.environ):
                if key.startswith("MODAL_"):
                    monkeypatch.delenv(key)
            for key, value in emu.client_env().items():
                monkeypatch.setenv(key, value)
            reset_modal_client()
            assert ModalAdapter().run("llm/mock@1", {"prompt": PROMPT, "mode": "live"})["text"]
            assert collector.spans() == []  # still queued in the container
            [old] = emu.containers()
            emu.deploy(ROOT / "deploy.py", env={"THEORY_MODAL_SECRETS": SECRET_NAME})  # retires the container
            spans = collector.wait_for_spans(timeout_s=30)
            exited = [c for c in emu.containers(include_exited=True) if c.task_id == old.task_id]
            assert exited and exited[0].state in ("stopping", "exited"), exited  # it did go away
        finally:
            reset_modal_client()
            emu.stop()
    [span] = spans
    assert span["attributes"]["theory_modal.ref"] == "llm/mock@1"
    assert "gen_ai.client.operation.duration" in collector.metric_names()
