"""Send this process's GenAI spans and metrics to an OTLP/HTTP collector, set up from the standard variables.

The Modal handlers call :func:`setup_from_env` at a container's first input (never at import: a memory
snapshot must not hold the exporter's threads) and :func:`after_call` when each input ends. Nothing happens
unless an OTLP endpoint is configured in the environment, typically through a Modal Secret:

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (base URL; ``/v1/traces`` and ``/v1/metrics`` are appended) or the per-signal
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (full URLs);
- ``OTEL_EXPORTER_OTLP_HEADERS`` (``name=value,...``, e.g. the collector's API key), ``OTEL_EXPORTER_OTLP_TIMEOUT``,
  ``OTEL_EXPORTER_OTLP_COMPRESSION``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``: read by the exporter
  and the SDK as usual. ``OTEL_TRACES_EXPORTER=none`` / ``OTEL_METRICS_EXPORTER=none`` turn one signal off,
  ``OTEL_SDK_DISABLED=true`` (or ``THEORY_MODAL_TELEMETRY=off``) both.

Why spans are not lost when a container goes away: spans go through a ``BatchSpanProcessor`` (export happens on
its thread, never on the event loop serving the inputs), and at the end of every input a flush is requested
from one background thread; the input waits for it at most ``THEORY_MODAL_OTEL_FLUSH_WAIT_S`` seconds
(default 1.0; ``0`` = do not wait), and not at all while the collector is failing, so a slow or dead collector
never holds replies back for long. A healthy collector has the span before the caller has the reply. What is
still queued when the container exits (scale-down after idle, ``modal app stop``) is exported by the SDK's
exit-time shutdown. ``THEORY_MODAL_OTEL_FLUSH=exit`` skips the per-input flush (for busy functions: spans then
leave in batches every ``OTEL_BSP_SCHEDULE_DELAY`` ms, 5 s, and at exit; a container killed outright loses the
last batch). Metrics are cumulative and exported every ``OTEL_METRIC_EXPORT_INTERVAL`` ms (60 s) and at
exit.

What this never does: configure anything when the application already set a global OpenTelemetry provider or
gave providers to :func:`providers.telemetry.configure` (its setup wins); set the global providers itself
(only this package's spans go to the exporter); raise into a call (every failure here is logged and dropped);
log a header value (the values are registered as secrets, so :func:`providers.redact.redact` removes any 8
characters of them from every error and log line, and OpenTelemetry's own loggers are filtered the same way).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any
from urllib.parse import unquote

from providers import telemetry
from providers.redact import install_log_redaction, mask_url, redact, remember_secret

__all__ = [
    "LOGGER",
    "FLUSH_WAIT_VAR",
    "FLUSH_VAR",
    "HEADER_VARS",
    "endpoints",
    "setup_from_env",
    "active",
    "after_call",
    "flush",
    "shutdown",
]

LOGGER = "theory_modal.otel"
FLUSH_WAIT_VAR = "THEORY_MODAL_OTEL_FLUSH_WAIT_S"
#: ``call`` (default): flush at the end of every input; ``exit``: only in batches and at container exit.
FLUSH_VAR = "THEORY_MODAL_OTEL_FLUSH"
_DEFAULT_FLUSH_WAIT_S = 1.0
#: Every variable the exporters read headers from: their values are credentials.
HEADER_VARS = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
)
_TRUE = ("1", "true", "yes", "on")
_OFF = ("0", "off", "false", "no")

_log = logging.getLogger(LOGGER)
_lock = threading.Lock()
_state: _Export | None = None  # the running exporters, once set up
_checked = False  # setup_from_env ran (whatever it decided): later inputs pay one global read


def endpoints(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OTLP/HTTP endpoints the environment asks for: ``{"traces": url, "metrics": url}`` (either may be
    missing; empty when nothing is configured or the SDK is disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return {}
    if env.get("THEORY_MODAL_TELEMETRY", "on").strip().lower() in _OFF:
        return {}
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    out: dict[str, str] = {}
    for signal in ("traces", "metrics"):
        if env.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower() == "none":
            continue
        url = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
        if url:
            out[signal] = url
        elif base:
            out[signal] = base.rstrip("/") + f"/v1/{signal}"
    return out


def _header_secrets(env: Mapping[str, str]) -> set[str]:
    """Every form in which a header value could be quoted back: each ``name=value`` piece and each value, raw,
    trimmed and URL-decoded (OpenTelemetry logs a piece it cannot parse verbatim; an HTTP error can quote a
    value)."""
    out: set[str] = set()
    for var in HEADER_VARS:
        for piece in (env.get(var) or "").split(","):
            name, sep, value = piece.partition("=")
            for text in (piece, value) if sep else (piece,):  # whole too: a piece OpenTelemetry rejects is logged
                out.update((text, text.strip(), unquote(text), unquote(text).strip()))
    return {s for s in out if s}


class _Recording:
    """Wraps an exporter to remember whether its last export reached the collector (for :func:`after_call`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ok = True

    def export(self, batch: Any) -> Any:
        try:
            result = self.inner.export(batch)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the processor's thread
            self.ok = False
            _log.warning("OTLP export failed: %s", redact(f"{type(exc).__name__}: {exc}"))
            from opentelemetry.sdk.trace.export import SpanExportResult

            return SpanExportResult.FAILURE
        self.ok = getattr(result, "name", "") == "SUCCESS"
        return result

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self.inner.shutdown(*args, **kwargs)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _Flusher:
    """One background thread that flushes the span processor on request.

    :meth:`request` returns a future resolved by the first flush that STARTS after the request (a span ended
    before the request is then in the exported batch). Requests made while a flush runs share the next one, so
    many concurrent inputs cost one export, and the event loop never blocks on the network."""

    def __init__(self, flush: Any) -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._waiting: list[Future[bool]] = []
        self._thread: threading.Thread | None = None

    def request(self) -> Future[bool]:
        future: Future[bool] = Future()
        with self._lock:
            self._waiting.append(future)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="theory-modal-otel-flush", daemon=True)
                self._thread.start()
        self._wake.set()
        return future

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._waiting = self._waiting, []
            if not batch:
                continue
            try:
                ok = bool(self._flush())
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                _log.warning("OTLP flush failed: %s", redact(f"{type(exc).__name__}: {exc}"))
                ok = False
            for future in batch:
                if not future.done():
                    try:
                        future.set_result(ok)
                    except Exception:  # noqa: BLE001 - cancelled meanwhile by a waiter that gave up
                        pass


class _Export:
    """The exporters this module set up: a tracer provider with a batch processor, maybe a meter provider."""

    def __init__(self, tracer_provider: Any, span_exporter: _Recording | None, meter_provider: Any,
                 flush_wait_s: float | None) -> None:
        self.tracer_provider = tracer_provider
        self.span_exporter = span_exporter
        self.meter_provider = meter_provider
        self.flush_wait_s = flush_wait_s
        self.flusher = _Flusher(self._flush)

    def _flush(self) -> bool:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        return self.span_exporter.ok if self.span_exporter is not None else True

    @property
    def healthy(self) -> bool:
        return self.span_exporter is None or self.span_exporter.ok


def _flush_wait(env: Mapping[str, str]) -> float | None:
    """Seconds an input waits for its flush; ``None``: no flush per input (``THEORY_MODAL_OTEL_FLUSH=exit``)."""
    mode = env.get(FLUSH_VAR, "").strip().lower()
    if mode == "exit":
        return None
    if mode not in ("", "call"):
        _log.warning("%s=%r is not 'call' or 'exit'; using 'call'", FLUSH_VAR, redact(mode)[:40])
    raw = env.get(FLUSH_WAIT_VAR, "").strip()
    if not raw:
        return _DEFAULT_FLUSH_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        _log.warning("%s=%r is not a number of seconds; using %s", FLUSH_WAIT_VAR, redact(raw)[:40],
                     _DEFAULT_FLUSH_WAIT_S)
        return _DEFAULT_FLUSH_WAIT_S
    return min(max(value, 0.0), 30.0) if value == value else _DEFAULT_FLUSH_WAIT_S


def _global_set(api: Any, getter: str, proxy_names: tuple[str, ...]) -> bool:
    """Whether the application set OpenTelemetry's global provider (the API hands out a proxy until then)."""
    provider = getattr(api, getter)()
    return type(provider).__name__ not in proxy_names


def _filter_otel_loggers() -> None:
    """Redact every record of OpenTelemetry's (and the HTTP stack's) loggers: some quote a header or a URL."""
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(("opentelemetry", "urllib3", "requests"))]
    install_log_redaction(LOGGER, *names)


def setup_from_env() -> bool:
    """Set up OTLP/HTTP export for this package's telemetry once per process, from the environment.

    Returns whether an exporter is now active. A no-op (``False``, opentelemetry not even imported) without an
    endpoint; ``False`` as well when the application configured OpenTelemetry itself, when the packages are
    missing, or when anything fails (logged, redacted). Never raises."""
    global _state, _checked
    if _checked:
        return _state is not None
    with _lock:
        if _checked:
            return _state is not None
        env = os.environ
        wanted = endpoints(env)
        if not wanted:
            _checked = True
            return False
        for secret in _header_secrets(env):  # before any OpenTelemetry code reads (and may log) them
            remember_secret(secret)
        try:
            _state = _build(env, wanted)
        except Exception as exc:  # noqa: BLE001 - telemetry must never fail the user's request
            _log.warning("OTLP export not set up: %s", redact(f"{type(exc).__name__}: {exc}")[:300])
            _state = None
        _checked = True
        return _state is not None


def _build(env: Mapping[str, str], wanted: dict[str, str]) -> _Export | None:
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        _log.warning("OTLP export needs the otel extra (pip install 'theory-modal[otel]'): %s", exc.name)
        return None
    _filter_otel_loggers()  # after the imports (they create the loggers), before the exporters parse headers
    app_tracer, app_meter = telemetry.configured_providers()
    if app_tracer is not None or _global_set(trace, "get_tracer_provider", ("ProxyTracerProvider",)):
        _log.info("OTLP export not set up: the application configured OpenTelemetry itself")
        return None
    resource = Resource.create()  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, when set, name the service
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "theory-modal"}))

    tracer_provider = span_exporter = None
    if "traces" in wanted:
        span_exporter = _Recording(OTLPSpanExporter(endpoint=wanted["traces"]))
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        file_path = env.get("THEORY_MODAL_OTEL_FILE", "").strip()
        if file_path:  # keep the file as well: it is what a test (or an operator) inspects in the container
            tracer_provider.add_span_processor(telemetry.file_span_processor(file_path))

    meter_provider = None
    if "metrics" in wanted and app_meter is None and not _global_set(
            metrics, "get_meter_provider", ("_ProxyMeterProvider", "ProxyMeterProvider")):
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=wanted["metrics"]))
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])

    if tracer_provider is None and meter_provider is None:
        return None
    kwargs: dict[str, Any] = {}
    if tracer_provider is not None:
        kwargs["tracer_provider"] = tracer_provider
    if meter_provider is not None:
        kwargs["meter_provider"] = meter_provider
    telemetry.configure(**kwargs)
    headers = sum(len([p for p in (env.get(var) or "").split(",") if p.strip()]) for var in HEADER_VARS)
    _log.info("OTLP export: %s (%d header(s); values never logged)",
              ", ".join(f"{signal} -> {mask_url(url)}" for signal, url in wanted.items()), headers)
    return _Export(tracer_provider, span_exporter, meter_provider, _flush_wait(env))


def active() -> bool:
    """Whether :func:`setup_from_env` set up an exporter in this process."""
    return _state is not None


async def after_call() -> None:
    """At the end of an input: have the spans ended so far exported now, waiting a bounded time for it.

    Waits at most ``THEORY_MODAL_OTEL_FLUSH_WAIT_S`` and not at all while the last export failed (a dead
    collector must not slow every call down); the flush goes on in the background either way. Never raises
    (a cancellation of the calling task still propagates)."""
    export = _state
    if export is None or export.flush_wait_s is None:
        return
    try:
        future = export.flusher.request()
        wait = export.flush_wait_s if export.healthy else 0.0
        if wait > 0:
            await asyncio.wait_for(asyncio.wrap_future(future), wait)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a timeout or anything else: the reply goes out regardless
        pass


def flush(timeout_s: float = 5.0) -> bool:
    """Export what is queued now, from synchronous code; ``True`` when the collector took it in time."""
    export = _state
    if export is None:
        return True
    try:
        return bool(export.flusher.request().result(timeout=timeout_s))
    except Exception:  # noqa: BLE001
        return False


def shutdown() -> None:
    """Flush and stop the exporters, hand telemetry back to the global providers, and allow a new setup
    (tests; an application replacing its setup). The SDK also does this by itself at interpreter exit."""
    global _state, _checked
    with _lock:
        export, _state, _checked = _state, None, False
    if export is None:
        return
    for provider in (export.tracer_provider, export.meter_provider):
        if provider is not None:
            try:
                provider.shutdown()
            except Exception as exc:  # noqa: BLE001
                _log.warning("OTLP shutdown failed: %s", redact(f"{type(exc).__name__}: {exc}")[:300])
    current_tracer, current_meter = telemetry.configured_providers()
    kwargs: dict[str, Any] = {}
    if current_tracer is export.tracer_provider and export.tracer_provider is not None:
        kwargs["tracer_provider"] = None
    if current_meter is export.meter_provider and export.meter_provider is not None:
        kwargs["meter_provider"] = None
    if kwargs:
        telemetry.configure(**kwargs)
