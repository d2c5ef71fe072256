"""OTLP/HTTP export of the handlers' spans (providers.telemetry_export), against a loopback collector.

The collector (theory_modal.testing.otlp_receiver) decodes the protobuf bodies the real exporter sends. Asserts:
nothing is set up (nor imported) without the variables; an application's own OpenTelemetry setup wins; a span
ended in a handler reaches the collector before the handler returns, with the GenAI attributes and no prompt
text; metrics reach it at shutdown; a bad endpoint or a failing collector never fails a call; and no 8
characters of a header value (a collector key) reach any log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import redact as redact_module
from providers import telemetry, telemetry_export
from providers.redact import MIN_FRAGMENT
from theory_modal import handlers
from theory_modal.testing.otlp_receiver import OtlpReceiver

PROMPT = "the violet giraffe sings at noon"
COLLECTOR_KEY = "otlpKEY-3f9a7c21d4e8b605"
OTEL_VARS = ("OTEL_", "THEORY_MODAL_OTEL", "THEORY_MODAL_TELEMETRY")


@pytest.fixture
def clean_env(monkeypatch):
    """No OTel variable from the host; exporters torn down and remembered secrets restored afterwards."""
    for name in list(os.environ):
        if name.startswith(OTEL_VARS):
            monkeypatch.delenv(name)
    telemetry_export.shutdown()
    remembered = set(redact_module._remembered)
    yield monkeypatch
    telemetry_export.shutdown()
    telemetry.configure(tracer_provider=None, meter_provider=None)
    with redact_module._lock:
        redact_module._remembered.clear()
        redact_module._remembered.update(remembered)


@pytest.fixture
def collector():
    with OtlpReceiver() as receiver:
        yield receiver
        telemetry_export.shutdown()  # the last export (metrics) while the collector still listens


def _chat(prompt: str = PROMPT, **extra) -> dict:
    return asyncio.run(handlers.chat("llm/mock@1", "mock", {"prompt": prompt, "mode": "live", **extra}))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ what is asked for
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
         {"traces": "http://c:4318/v1/traces", "metrics": "http://c:4318/v1/metrics"}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"},
         {"traces": "http://c:4318/v1/traces", "metrics": "http://c:4318/v1/metrics"}),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t/x"}, {"traces": "https://t/x"}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"},
         {"traces": "http://t/x", "metrics": "http://c/v1/metrics"}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_METRICS_EXPORTER": "none"}, {"traces": "http://c/v1/traces"}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}, {}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "THEORY_MODAL_TELEMETRY": "off"}, {}),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x-key=abc"}, {}),  # headers alone ask for nothing
    ],
)
def test_endpoints_follow_the_standard_variables(env, expected):
    assert telemetry_export.endpoints(env) == expected


def _run_isolated(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(OTEL_VARS)}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


def test_without_the_variables_setup_is_a_no_op_that_imports_nothing_and_starts_no_thread():
    code = (
        "import sys, threading, asyncio\n"
        "from providers import telemetry_export\n"
        "from theory_modal import handlers\n"
        "assert telemetry_export.setup_from_env() is False and not telemetry_export.active()\n"
        "r = asyncio.run(handlers.chat('llm/mock@1', 'mock', {'prompt': 'hi', 'mode': 'live'}))\n"
        "assert r['text'], r\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert loaded == [], loaded\n"
        "assert [t.name for t in threading.enumerate()] == ['MainThread'], threading.enumerate()\n"
        "print('ok')\n"
    )
    r = _run_isolated(code, {})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_an_application_global_tracer_provider_is_never_replaced():
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "mine = TracerProvider(); trace.set_tracer_provider(mine)\n"
        "from providers import telemetry, telemetry_export\n"
        "assert telemetry_export.setup_from_env() is False\n"
        "assert trace.get_tracer_provider() is mine and telemetry.configured_providers() == (None, None)\n"
        "print('ok')\n"
    )
    r = _run_isolated(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_providers_given_to_configure_are_never_replaced(clean_env, collector):
    from opentelemetry.sdk.trace import TracerProvider

    mine = TracerProvider()
    telemetry.configure(tracer_provider=mine)
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    assert telemetry_export.setup_from_env() is False
    assert telemetry.configured_providers()[0] is mine


def test_import_providers_does_not_import_the_exporter_module_or_opentelemetry():
    r = _run_isolated("import sys, providers; print(sorted(m for m in sys.modules if 'opentelemetry' in m "
                      "or m == 'providers.telemetry_export'))", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


# ------------------------------------------------------------------------------------------ the export itself
def test_a_handler_span_reaches_the_collector_before_the_handler_returns(clean_env, collector):
    """With a generous flush wait the collector has the span when the reply is back: no polling needed."""
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    clean_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-collector-key={COLLECTOR_KEY}")
    clean_env.setenv(telemetry_export.FLUSH_WAIT_VAR, "30")
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # only the per-call flush can deliver it in time
    assert telemetry_export.setup_from_env() is True
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    reply = _chat(trace={"traceparent": parent})
    assert reply["text"]

    [span] = collector.spans()  # no wait: it arrived before chat() returned
    assert span["name"] == "chat " + span["attributes"]["gen_ai.request.model"]
    assert span["trace_id"] == "ab" * 16 and span["parent_span_id"] == "cd" * 8
    assert span["kind"] == 3  # SPAN_KIND_CLIENT
    attrs = span["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "mock"
    assert attrs["gen_ai.response.model"] == reply["model"]
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["theory_modal.ref"] == "llm/mock@1" and attrs["theory_modal.mode"] == "live"
    assert span["resource"]["service.name"] == "theory-modal"
    [request] = collector.requests("/v1/traces")
    assert request.headers["x-collector-key"] == COLLECTOR_KEY  # the header reached the collector...
    assert PROMPT.encode() not in request.body and reply["text"].encode() not in request.body  # ...content not

    telemetry_export.shutdown()  # what the SDK does at interpreter exit: the metrics go out too
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"} <= collector.metric_names()


def test_a_stream_span_is_exported_before_the_done_event(clean_env, collector):
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.endpoint + "/v1/traces")
    clean_env.setenv(telemetry_export.FLUSH_WAIT_VAR, "30")
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    assert telemetry_export.setup_from_env() is True

    async def run() -> list:
        seen = []
        async for event in handlers.stream("llm/mock@1", "mock", {"prompt": PROMPT, "mode": "live"}):
            seen.append((event["type"], len(collector.spans())))
        return seen

    events = asyncio.run(run())
    assert events[-1] == ("done", 1) and all(n == 0 for kind, n in events if kind == "delta")
    assert collector.spans()[0]["attributes"]["gen_ai.request.stream"] is True
    assert collector.metric_names() == set()  # only traces were asked for


def test_spans_of_a_container_also_go_to_the_span_file_when_both_are_set(clean_env, collector, tmp_path):
    path = tmp_path / "spans.jsonl"
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    clean_env.setenv("THEORY_MODAL_OTEL_FILE", str(path))
    assert telemetry_export.setup_from_env() is True
    _chat()
    assert telemetry_export.flush(timeout_s=10)
    assert len(collector.spans()) == 1 and len(path.read_text().splitlines()) == 1


@pytest.mark.parametrize(("env", "name"), [
    ({}, "theory-modal"),
    ({"OTEL_SERVICE_NAME": "llm-gateway"}, "llm-gateway"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=prod"}, "from-attrs"),
])
def test_the_service_name_is_ours_unless_the_variables_name_one(clean_env, collector, env, name):
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert telemetry_export.setup_from_env() is True
    _chat()
    assert telemetry_export.flush(timeout_s=10)
    [span] = collector.spans()
    assert span["resource"]["service.name"] == name


def test_setup_happens_once_per_process(clean_env, collector):
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    assert telemetry_export.setup_from_env() is True
    first = telemetry.configured_providers()
    assert telemetry_export.setup_from_env() is True
    assert telemetry.configured_providers() == first


def test_with_flush_at_exit_spans_wait_for_the_batch_and_still_leave_when_the_process_exits(collector):
    """THEORY_MODAL_OTEL_FLUSH=exit: no export per input (the batch delay here is ten minutes), yet the span
    is not lost: the process's normal exit (what a scaled-down container does) exports it."""
    code = (
        "import asyncio, sys\n"
        "from providers import telemetry_export\n"
        "from theory_modal import handlers\n"
        "assert telemetry_export.setup_from_env()\n"
        "asyncio.run(handlers.chat('llm/mock@1', 'mock', {'prompt': 'bye', 'mode': 'live'}))\n"
        "print('called', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(OTEL_VARS)}
    env = {**clean, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, telemetry_export.FLUSH_VAR: "exit",
           "OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
    with subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline().strip() == "called", child.stderr.read()
            assert collector.spans() == []  # the input ended with nothing exported
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.wait(timeout=60) == 0, child.stderr.read()
        finally:
            if child.poll() is None:
                child.kill()
    [span] = collector.spans()  # exported by the exit-time shutdown, before the process was gone
    assert span["attributes"]["theory_modal.ref"] == "llm/mock@1"
    assert "gen_ai.client.operation.duration" in collector.metric_names()


# ------------------------------------------------------------------------------------------ failures
@pytest.mark.parametrize("status", [401, 500, 503])
def test_a_failing_collector_never_fails_a_call(clean_env, status):
    with OtlpReceiver(status=status) as failing:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", failing.endpoint)
        clean_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
        assert telemetry_export.setup_from_env() is True
        for _ in range(3):
            assert _chat()["text"]
        assert telemetry_export.flush(timeout_s=10) is False  # it did fail, and said so
        assert failing.requests("/v1/traces")


def test_while_exports_fail_inputs_stop_waiting_for_them(clean_env):
    """After a failed export, a hung collector cannot hold replies back: the next input does not wait for its
    flush (which here would hang for ten minutes), though the flush itself still goes out."""
    with OtlpReceiver(status=500) as failing:
        clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", failing.endpoint + "/v1/traces")
        clean_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "600")
        clean_env.setenv(telemetry_export.FLUSH_WAIT_VAR, "30")
        assert telemetry_export.setup_from_env() is True
        assert _chat()["text"]  # waited for its flush: answered 500 (not retried), so exports now fail
        assert len(failing.requests("/v1/traces")) == 1
        failing.answering.clear()  # from now on the collector hangs
        try:
            reply = asyncio.run(asyncio.wait_for(
                handlers.chat("llm/mock@1", "mock", {"prompt": PROMPT, "mode": "live"}), 20))
            assert reply["text"]
        finally:
            failing.answering.set()
        assert telemetry_export.flush(timeout_s=30) is False
        assert len(failing.requests("/v1/traces")) == 2


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:{port}",  # nothing listens there
    "not a url at all",
    "http://[::1",
    "ftp://127.0.0.1:{port}/x",
])
def test_a_bad_endpoint_never_fails_a_call(clean_env, endpoint, caplog):
    caplog.set_level(logging.DEBUG)
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.format(port=_free_port()))
    clean_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
    telemetry_export.setup_from_env()
    for _ in range(2):
        assert _chat()["text"]

    async def stream() -> list:
        return [e async for e in handlers.stream("llm/mock@1", "mock", {"prompt": "s", "mode": "live"})]

    assert asyncio.run(stream())[-1]["type"] == "done"
    assert telemetry_export.flush(timeout_s=10) is False


def test_bad_exporter_settings_leave_calls_working_and_say_why(clean_env, caplog):
    caplog.set_level(logging.INFO, logger=telemetry_export.LOGGER)
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    clean_env.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "-1")  # the SDK refuses it with ValueError
    assert telemetry_export.setup_from_env() is False
    assert _chat()["text"]
    assert "OTLP export not set up: ValueError: max_queue_size must be a positive integer" in caplog.text


# ------------------------------------------------------------------------------------------ secrets
# Mostly printable ASCII (what keys look like), plus what trips HTTP stacks: spaces, tabs, line breaks,
# separators (',' '=' '%' ';'), non-Latin-1 text that requests cannot even encode.
_KEY_CHARS = st.one_of(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    st.sampled_from([" ", "\t", "\n", "\r", ",", "=", "%", ";", "é", "€", "漢"]),
)


def _header_value(key: str, style: str) -> str:
    if style == "plain":
        return f"x-api-key={key}"
    if style == "bearer":
        return f"authorization=Bearer {key}"
    if style == "encoded":
        return f"authorization=Bearer%20{quote(key, safe='')}"
    if style == "two":
        return f"x-team=ops,x-api-key={key}"
    return key  # no name at all: a malformed header OpenTelemetry logs verbatim


def _export_logs(clean_env, caplog, header: str, status: int) -> str:
    """Set up export with ``header``, make one call, flush and shut down; every log line it produced."""
    telemetry_export.shutdown()
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    with OtlpReceiver(status=status or 200) as receiver:
        endpoint = receiver.endpoint if status else f"http://127.0.0.1:{_free_port()}"
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        clean_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", header)
        clean_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.1")
        clean_env.setenv("OTEL_METRICS_EXPORTER", "none")  # the same header code; half the exports
        clean_env.setenv(telemetry_export.FLUSH_WAIT_VAR, "0")
        telemetry_export.setup_from_env()
        assert _chat()["text"]
        telemetry_export.flush(timeout_s=10)
        telemetry_export.shutdown()
    return "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)


def _windows(text: str) -> set[str]:
    return {text[i:i + MIN_FRAGMENT] for i in range(len(text) - MIN_FRAGMENT + 1)}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(_KEY_CHARS, min_size=MIN_FRAGMENT, max_size=40),
       style=st.sampled_from(["plain", "bearer", "encoded", "two", "bare"]),
       status=st.sampled_from([200, 401, 0]))
def test_no_eight_characters_of_a_header_key_reach_any_log_line(clean_env, caplog, key, style, status):
    """Invariant: whatever the collector key looks like and however the export ends (accepted, refused,
    unreachable), no MIN_FRAGMENT-character run of it appears in any log record, and the call succeeds.

    A run that also appears in the logs of the same flow with a different key of the same length is ordinary
    log text, not a leak (hypothesis draws keys from the project's own string literals, e.g. "emulator")."""
    text = _export_logs(clean_env, caplog, _header_value(key, style), status)
    control_key = "".join("0123456789abcdef"[(ord(c) * 7 + i) % 16] for i, c in enumerate(key))
    control = _export_logs(clean_env, caplog, _header_value(control_key, style), status)
    leaked = (_windows(key) & _windows(text)) - _windows(control)
    assert not leaked, (leaked, text[:2000])
