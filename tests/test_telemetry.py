"""OpenTelemetry GenAI telemetry (providers.telemetry) with the SDK's in-memory exporter and metric reader.

Asserts the span names and attributes of the GenAI semantic conventions, the metrics, the retry/fallback
events, the JSON call log, and that prompt text and keys are absent unless content capture is opted into.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from providers import (
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    get_llm_provider,
    telemetry,
)
from providers.mock import MockProvider

KEY = "sk-test-key-123456"
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
PROMPT = "Tell me about the purple elephant"


class Otel:
    def __init__(self) -> None:
        self.spans_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self):
        return list(self.spans_exporter.get_finished_spans())

    def metrics(self) -> dict[str, list]:
        """metric name -> data points"""
        out: dict[str, list] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out


@pytest.fixture
def otel():
    o = Otel()
    telemetry.configure(tracer_provider=o.tracer_provider, meter_provider=o.meter_provider, enabled=True)
    yield o
    telemetry.configure(tracer_provider=None, meter_provider=None, capture_content=False, call_log=False)


@pytest.fixture
def openai_llm(fake_llm, no_provider_keys):
    def make(model="openai/gpt-4o-mini", **kw):
        kw.setdefault("api_key", KEY)
        if "max_retries" not in kw:
            kw.setdefault("retry", FAST)
        kw.setdefault("timeout", 60)
        return get_llm_provider("litellm", model_default=model, api_base=fake_llm.openai_base, **kw)

    return make


def everything_recorded(span) -> str:
    """Every attribute and event of a span, as one string (to search for what must not be there)."""
    parts = [span.name, json.dumps(dict(span.attributes), default=str)]
    for e in span.events:
        parts += [e.name, json.dumps(dict(e.attributes), default=str)]
    parts.append(str(span.status.description))
    return "\n".join(parts)


# ------------------------------------------------------------------ spans
def test_chat_span_has_the_genai_name_kind_and_attributes_and_no_prompt(otel, openai_llm):
    llm = openai_llm()
    reply = llm.chat(PROMPT, temperature=0.3, top_p=0.9, max_tokens=20, seed=7, stop=["END"], system="be brief")
    [span] = otel.spans()
    assert span.name == "chat openai/gpt-4o-mini"
    assert span.kind == SpanKind.CLIENT
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert a["gen_ai.response.model"] == reply.model
    assert a["gen_ai.request.temperature"] == 0.3 and a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.max_tokens"] == 20 and a["gen_ai.request.seed"] == 7
    assert tuple(a["gen_ai.request.stop_sequences"]) == ("END",)
    assert a["gen_ai.usage.input_tokens"] == reply.usage["tokens_in"] > 0
    assert a["gen_ai.usage.output_tokens"] == reply.usage["tokens_out"] > 0
    assert a["theory_modal.usage.usd_micros"] == reply.usage["usd_micros"]
    assert a["theory_modal.attempts"] == 1
    finish = getattr(reply, "finish_reason", None)
    assert a.get("gen_ai.response.finish_reasons") == ((finish,) if finish else None)
    assert span.status.status_code != StatusCode.ERROR
    recorded = everything_recorded(span)
    assert "purple elephant" not in recorded and "be brief" not in recorded and reply.text not in recorded
    assert KEY not in recorded


def test_unset_options_are_not_recorded(otel):
    MockProvider().chat("hello")
    [span] = otel.spans()
    assert not [k for k in span.attributes if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"]
    assert span.attributes["gen_ai.provider.name"] == "mock"


def test_failure_sets_error_type_and_error_status_without_the_message(otel, openai_llm):
    llm = openai_llm("openai/error-400")
    with pytest.raises(InvalidRequestError):
        llm.chat(PROMPT)
    [span] = otel.spans()
    assert span.attributes["error.type"] == "InvalidRequestError"
    assert span.attributes["theory_modal.error.kind"] == "invalid_request"
    assert span.status.status_code == StatusCode.ERROR
    assert "Fake error" not in everything_recorded(span)  # upstream text stays off the span
    [point] = otel.metrics()["gen_ai.client.operation.duration"]
    assert point.attributes["error.type"] == "InvalidRequestError" and point.count == 1


def test_retries_are_span_events_with_attempt_number_and_kind(otel, openai_llm, fake_llm):
    fake_llm.script("error-500", "error-503-noretry")
    reply = openai_llm().chat(PROMPT)
    [span] = otel.spans()
    retries = [e for e in span.events if e.name == "theory_modal.retry"]
    assert [(e.attributes["theory_modal.attempt"], e.attributes["theory_modal.error.kind"]) for e in retries] == [
        (2, "unavailable"), (3, "unavailable")]
    assert span.attributes["theory_modal.attempts"] == 3
    assert reply.model == "openai/gpt-4o-mini"


def test_fallbacks_are_span_events_and_the_response_model_is_the_one_that_answered(otel, openai_llm):
    llm = openai_llm("openai/error-404", fallbacks=["openai/error-500", "openai/gpt-4o"], max_retries=0)
    reply = llm.chat(PROMPT)
    [span] = otel.spans()
    assert span.name == "chat openai/error-404"
    assert span.attributes["gen_ai.request.model"] == "openai/error-404"
    assert span.attributes["gen_ai.response.model"] == reply.model == "openai/gpt-4o"
    events = [e.attributes for e in span.events if e.name == "theory_modal.fallback"]
    assert [(e["theory_modal.fallback.from_model"], e["theory_modal.fallback.to_model"], e["theory_modal.error.kind"])
            for e in events] == [("openai/error-404", "openai/error-500", "model_not_found"),
                                 ("openai/error-500", "openai/gpt-4o", "unavailable")]
    assert [e["theory_modal.attempt"] for e in events] == [1, 2]
    assert tuple(span.attributes["theory_modal.fallback.failed_models"]) == ("openai/error-404", "openai/error-500")


def test_stream_span_lasts_until_the_stream_ends_and_records_time_to_first_chunk(otel, openai_llm):
    stream = openai_llm().stream_chat(PROMPT, max_tokens=30)
    first = next(stream)
    assert first and otel.spans() == []  # still open while the caller reads
    rest = "".join(stream)
    [span] = otel.spans()
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.output_tokens"] == stream.reply.usage["tokens_out"]
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert "purple elephant" not in everything_recorded(span) and (first + rest) not in everything_recorded(span)
    m = otel.metrics()
    assert [p.count for p in m["gen_ai.client.operation.time_to_first_chunk"]] == [1]
    assert [p.count for p in m["gen_ai.client.operation.duration"]] == [1]


def test_a_stream_closed_early_still_ends_its_span(otel):
    stream = MockProvider().stream_chat("one two three four")
    next(stream)
    stream.close()
    [span] = otel.spans()
    assert span.attributes["theory_modal.outcome"] == "cancelled"


def test_async_chat_and_stream_are_spans_too(otel, openai_llm):
    llm = openai_llm()

    async def main():
        await llm.achat(PROMPT)
        s = llm.astream_chat(PROMPT)
        async for _ in s:
            pass

    asyncio.run(main())
    spans = otel.spans()
    assert [s.name for s in spans] == ["chat openai/gpt-4o-mini"] * 2
    assert "gen_ai.request.stream" not in spans[0].attributes and spans[1].attributes["gen_ai.request.stream"]
    assert all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in spans)


# ------------------------------------------------------------------ metrics
def test_token_usage_metric_by_token_type_and_duration_metric(otel, openai_llm):
    reply = openai_llm().chat(PROMPT)
    m = otel.metrics()
    usage = {p.attributes["gen_ai.token.type"]: p for p in m["gen_ai.client.token.usage"]}
    assert usage["input"].sum == reply.usage["tokens_in"] and usage["output"].sum == reply.usage["tokens_out"]
    for p in usage.values():
        assert p.attributes["gen_ai.operation.name"] == "chat"
        assert p.attributes["gen_ai.provider.name"] == "openai"
        assert p.attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
        assert p.attributes["gen_ai.response.model"] == "openai/gpt-4o-mini"
        assert p.explicit_bounds[:3] == (1, 4, 16)
    [duration] = m["gen_ai.client.operation.duration"]
    assert duration.count == 1 and duration.sum > 0 and "error.type" not in duration.attributes
    assert "gen_ai.client.operation.time_to_first_chunk" not in m  # streams only


# ------------------------------------------------------------------ content capture
def test_prompt_and_reply_are_recorded_only_when_opted_in(otel):
    llm = MockProvider()
    llm.chat(PROMPT, system="be brief")
    telemetry.configure(capture_content=True)
    reply = llm.chat(PROMPT, system="be brief")
    first, second = otel.spans()
    assert "purple elephant" not in everything_recorded(first)
    messages = json.loads(second.attributes["gen_ai.input.messages"])
    assert messages == [{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}]
    assert json.loads(second.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "be brief"}]
    out = json.loads(second.attributes["gen_ai.output.messages"])
    assert out[0]["role"] == "assistant" and out[0]["parts"][0]["content"] == reply.text


def test_captured_content_is_still_redacted(otel, monkeypatch):
    monkeypatch.setenv("SOMEVENDOR_API_KEY", "abcdefgh12345678")
    telemetry.configure(capture_content=True)
    MockProvider().chat("my key is abcdefgh12345678 and sk-abcdefghijklmnop")
    [span] = otel.spans()
    recorded = everything_recorded(span)
    assert "abcdefgh12345678" not in recorded and "sk-abcdefghijklmnop" not in recorded


# ------------------------------------------------------------------ the call log
def test_call_log_is_off_by_default(caplog, otel):
    with caplog.at_level(logging.DEBUG, logger=telemetry.CALL_LOGGER):
        MockProvider().chat(PROMPT)
    assert [r for r in caplog.records if r.name == telemetry.CALL_LOGGER] == []


def test_call_log_is_one_json_line_per_call_without_prompt_or_key(caplog, otel, openai_llm):
    telemetry.configure(call_log=True)
    llm = openai_llm("openai/error-500", fallbacks=["openai/gpt-4o-mini"], max_retries=0)
    with caplog.at_level(logging.INFO, logger=telemetry.CALL_LOGGER), telemetry.call_context(
            ref="llm/litellm@1", mode="live", request_id="req-42"):
        reply = llm.chat(PROMPT)
    [record] = [r for r in caplog.records if r.name == telemetry.CALL_LOGGER]
    line = record.getMessage()
    data = json.loads(line)
    assert data["request_id"] == "req-42" and data["ref"] == "llm/litellm@1" and data["mode"] == "live"
    assert data["model"] == reply.model == "openai/gpt-4o-mini"
    assert data["requested_model"] == "openai/error-500"
    assert data["tokens_in"] == reply.usage["tokens_in"] and data["tokens_out"] == reply.usage["tokens_out"]
    assert data["usd_micros"] == reply.usage["usd_micros"]
    assert data["attempts"] == 2 and data["fallbacks"] == ["openai/error-500"] and data["outcome"] == "ok"
    assert isinstance(data["latency_ms"], int)
    assert data["trace_id"] == format(otel.spans()[0].get_span_context().trace_id, "032x")
    assert "purple" not in line and KEY not in line and KEY[-6:] not in line


def test_call_log_works_without_opentelemetry_spans(caplog):
    telemetry.configure(call_log=True, enabled=False)
    try:
        with caplog.at_level(logging.INFO, logger=telemetry.CALL_LOGGER):
            with pytest.raises(RateLimitError):
                MockProvider().chat(PROMPT, mock_error="rate_limited")
        [record] = [r for r in caplog.records if r.name == telemetry.CALL_LOGGER]
        data = json.loads(record.getMessage())
        assert data["outcome"] == "rate_limited" and data["model"] is None and "trace_id" not in data
    finally:
        telemetry.configure(call_log=False, enabled=True)


# ------------------------------------------------------------------ optional dependency, import cost
def test_import_providers_does_not_import_opentelemetry():
    code = "import sys, providers; print('opentelemetry' in sys.modules or any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_without_opentelemetry_installed_calls_work_and_record_nothing():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # an import of it now raises ImportError
        "from providers import get_llm_provider, telemetry\n"
        "llm = get_llm_provider('mock', fallbacks=['mock-b'])\n"
        "r = llm.chat('hi'); s = llm.stream_chat('hi'); ''.join(s)\n"
        "assert telemetry.start_call('mock', 'mock', {}) is not None\n"
        "print(type(telemetry.start_call('mock', 'mock', {})).__name__, telemetry.inject_trace(), r.model, s.reply.model)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["_NoCall", "None", "mock", "mock"]


# ------------------------------------------------------------------ trace context
def test_trace_context_round_trips_so_the_remote_span_is_a_child(otel):
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as parent:
        carrier = telemetry.inject_trace()
    assert set(carrier) <= set(telemetry.TRACE_KEYS) and "traceparent" in carrier
    with telemetry.remote_parent(carrier):
        MockProvider().chat("hi")
    child = [s for s in otel.spans() if s.name == "chat mock"][0]
    assert child.context.trace_id == parent.get_span_context().trace_id
    assert child.parent.span_id == parent.get_span_context().span_id
    assert telemetry.inject_trace() is None  # no current span: nothing to send


# ------------------------------------------------------------------ searched
KINDS = [ProviderUnavailableError, RateLimitError, ProviderTimeoutError, CredentialsError, ModelNotFoundError,
         InvalidRequestError, ProviderError]
SECRET = "sk-live-HYPOTHESIS0123456789abcdef"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(KINDS)), min_size=1, max_size=4),
       st.text(alphabet=st.characters(categories=["L", "N"]), min_size=10, max_size=30),
       st.sampled_from(["chat", "stream"]))
def test_no_prompt_text_or_key_fragment_in_any_span_attribute_event_or_log_line(outcomes, word, how):
    """Invariant: whatever fails and falls back, spans, events and the call log hold no prompt text and no
    fragment of a key, even when upstream error messages quote both."""
    o = Otel()
    telemetry.configure(tracer_provider=o.tracer_provider, meter_provider=o.meter_provider, enabled=True, call_log=True)
    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Grab()
    logger = logging.getLogger(telemetry.CALL_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    prompt = f"PROMPT{word}"
    models = [f"mock/m{i}" for i in range(len(outcomes))]
    llm = MockProvider(models[0], fallbacks=models[1:])
    for cls in outcomes:
        llm.enqueue("fine" if cls is None else cls(f"echo {prompt} key={SECRET} Bearer {SECRET}"))
    try:
        if how == "chat":
            llm.chat(prompt)
        else:
            "".join(llm.stream_chat(prompt))
    except ProviderError as exc:
        if len(outcomes) > 1:  # a chain's error message is redacted again (the mock's own raw text is not)
            assert SECRET not in str(exc) and SECRET[-12:] not in str(exc)
    finally:
        logger.removeHandler(handler)
        telemetry.configure(tracer_provider=None, meter_provider=None, call_log=False)
    [span] = o.spans()
    recorded = everything_recorded(span) + "\n".join(records)
    assert len(records) == 1
    assert prompt not in recorded  # (the word alone may be a real attribute name, e.g. "Unavailabl")
    for i in range(0, len(SECRET) - 8):
        assert SECRET[i : i + 8] not in recorded


def test_reasks_of_structured_output_are_span_events_without_the_reply_text(otel):
    """A reply that does not validate is re-asked: the call's span gets a ``theory_modal.reask`` event per
    re-ask (attempt number, what failed, kind) and a ``theory_modal.output_invalid`` event when it gives up;
    never the reply text or the validation message (it can quote the reply)."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    llm = MockProvider()
    llm.enqueue('{"n": "purple elephant"}', '{"n": 3}')
    reply = llm.chat(PROMPT, output_schema=schema, output_retries=2)
    assert reply.data == {"n": 3}
    (span,) = otel.spans()
    events = [(e.name, dict(e.attributes)) for e in span.events]
    reasks = [a for name, a in events if name == "theory_modal.reask"]
    assert len(reasks) == 1 and reasks[0]["theory_modal.reask.attempt"] == 1
    assert reasks[0]["theory_modal.reask.what"] == "reply" and reasks[0]["theory_modal.error.kind"] == "output_invalid"

    llm.enqueue('{"n": "purple elephant"}', '{"n": "purple elephant"}')
    with pytest.raises(ProviderError):
        llm.chat(PROMPT, output_schema=schema, output_retries=1)
    span = otel.spans()[-1]
    names = [e.name for e in span.events]
    assert names.count("theory_modal.reask") == 1 and names[-1] == "theory_modal.output_invalid"
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "OutputValidationError"
    for s in otel.spans():
        blob = json.dumps([dict(s.attributes), [dict(e.attributes) for e in s.events]])
        assert "purple" not in blob and "elephant" not in blob
