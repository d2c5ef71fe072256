"""OpenTelemetry GenAI spans and metrics for every provider call, and an optional JSON log line per call.

Follows the OpenTelemetry GenAI semantic conventions (client inference spans and client metrics):

- one CLIENT span per call, named ``"{gen_ai.operation.name} {gen_ai.request.model}"`` (``chat openai/gpt-4o-mini``),
  with ``gen_ai.provider.name``, ``gen_ai.request.model``, the ``gen_ai.request.*`` options that were set,
  ``gen_ai.response.model`` (the model that answered, after fallbacks), ``gen_ai.usage.input_tokens`` /
  ``output_tokens``, ``gen_ai.response.finish_reasons``; on failure ``error.type`` and status ERROR;
- cost in ``theory_modal.usage.usd_micros`` (no convention exists for money yet);
- span events ``theory_modal.retry`` and ``theory_modal.fallback`` (attempt number, error kind, models);
- metrics ``gen_ai.client.token.usage`` (by ``gen_ai.token.type``), ``gen_ai.client.operation.duration`` and,
  for streams, ``gen_ai.client.operation.time_to_first_chunk``.

Privacy: prompt and reply text are never recorded unless the user opts in (``configure(capture_content=True)`` or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``); even then secrets are redacted. Error messages are
never put on spans (upstream text can quote the request): only the error class and kind.

Cost when unused: ``import providers`` does not import opentelemetry, and neither does a call until the application
has imported it (to configure an SDK) or passed providers to :func:`configure`; when it is not installed (or
``THEORY_MODAL_TELEMETRY=off``) every hook here is a cheap no-op. The JSON log line
(logger ``theory_modal.calls``) is off unless ``THEORY_MODAL_CALL_LOG=1`` or ``configure(call_log=True)``.

Across Modal: :func:`inject_trace` gives the caller's W3C ``traceparent``/``tracestate`` for the request, and
:func:`remote_parent` continues it in the function, so the remote call's span is a child of the caller's.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from providers.errors import ProviderError, redact

__all__ = [
    "configure",
    "configured_providers",
    "file_span_processor",
    "start_call",
    "idle",
    "call_context",
    "note_retry",
    "note_event",
    "inject_trace",
    "remote_parent",
    "gen_ai_provider_name",
    "Call",
    "NO_CALL",
    "CALL_LOGGER",
    "TRACE_KEYS",
]

CALL_LOGGER = "theory_modal.calls"
#: The W3C trace-context keys that cross a process boundary in a request.
TRACE_KEYS = ("traceparent", "tracestate")
_INSTRUMENTATION = "theory_modal"
_TRUE = ("1", "true", "yes", "on")

# Bucket boundaries the GenAI metric conventions ask for.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_SECONDS_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

#: Generation options -> their ``gen_ai.request.*`` attribute.
_OPTION_ATTRS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "n": "gen_ai.request.choice.count",
}

#: LiteLLM provider prefixes -> ``gen_ai.provider.name`` well-known values (others pass through as they are).
_PROVIDER_NAMES = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
    "ollama": "ollama",
    "ollama_chat": "ollama",
}


# ------------------------------------------------------------------------------------------------ settings
class _Settings:
    __slots__ = ("enabled", "capture_content", "call_log", "tracer_provider", "meter_provider", "file_path",
                 "file_provider")

    def __init__(self) -> None:
        self.enabled = os.environ.get("THEORY_MODAL_TELEMETRY", "on").strip().lower() not in ("0", "off", "false", "no")
        self.capture_content = (
            os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() in _TRUE
        )
        self.call_log = os.environ.get("THEORY_MODAL_CALL_LOG", "").strip().lower() in _TRUE
        self.tracer_provider: Any = None
        self.meter_provider: Any = None
        self.file_path = os.environ.get("THEORY_MODAL_OTEL_FILE", "").strip() or None
        self.file_provider: Any = None  # the provider made for file_path (not one the application gave)


_settings = _Settings()
_state_lock = threading.Lock()
_otel: Any = None  # the loaded _Otel, or False when opentelemetry is not installed / telemetry is off


_UNSET: Any = object()


def configure(
    *,
    enabled: bool | None = None,
    capture_content: bool | None = None,
    call_log: bool | None = None,
    tracer_provider: Any = _UNSET,
    meter_provider: Any = _UNSET,
) -> None:
    """Change telemetry settings in this process (each defaults to its environment variable).

    ``tracer_provider``/``meter_provider``: use these instead of OpenTelemetry's global providers (``None``
    goes back to the globals). ``capture_content=True`` records prompt and reply text (redacted) on spans.
    """
    global _otel
    with _state_lock:
        if enabled is not None:
            _settings.enabled = bool(enabled)
        if capture_content is not None:
            _settings.capture_content = bool(capture_content)
        if call_log is not None:
            _settings.call_log = bool(call_log)
        if tracer_provider is not _UNSET:
            _settings.tracer_provider = tracer_provider
        if meter_provider is not _UNSET:
            _settings.meter_provider = meter_provider
        _otel = None  # rebuilt on next use with the new providers


class _Otel:
    """The loaded OpenTelemetry API: tracer, instruments and the propagation functions."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import context, metrics, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.context, self.propagate, self.trace = context, propagate, trace
        self.SpanKind, self.Status, self.StatusCode = SpanKind, Status, StatusCode
        self.tracer = trace.get_tracer(_INSTRUMENTATION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_INSTRUMENTATION, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )


def _load() -> _Otel | None:
    """The OpenTelemetry API once something in the process uses it; ``None`` when absent or disabled.

    Never imported at ``import providers``. Until the application imports opentelemetry itself (which it must
    do to configure an SDK), or gives providers to :func:`configure`, or sets ``THEORY_MODAL_OTEL_FILE``,
    there is nothing that could record a span, so calls skip telemetry for the price of a dict lookup."""
    global _otel
    otel = _otel
    if otel is not None:
        return otel or None
    if "opentelemetry.trace" not in sys.modules and not (
        _settings.tracer_provider or _settings.meter_provider or _settings.file_path
    ):
        return None  # not cached: the application may set OpenTelemetry up later
    with _state_lock:
        if _otel is None:
            if not _settings.enabled:
                _otel = False
            else:
                try:
                    tracer_provider = _settings.tracer_provider or _file_tracer_provider()
                    _otel = _Otel(tracer_provider, _settings.meter_provider)
                except ImportError:
                    _otel = False
        return _otel or None


def _file_tracer_provider() -> Any:
    """``THEORY_MODAL_OTEL_FILE=path``: spans as JSON lines to that file (needs opentelemetry-sdk). Meant for
    inspecting what a Modal container emitted, e.g. in the emulator tests; production uses an OTLP exporter
    (:mod:`providers.telemetry_export`)."""
    path = _settings.file_path
    if not path:
        return None
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    provider.add_span_processor(file_span_processor(path))
    _settings.tracer_provider = _settings.file_provider = provider
    return provider


def configured_providers() -> tuple[Any, Any]:
    """The (tracer, meter) providers the application gave :func:`configure` (``None`` for each not given).
    The provider made for ``THEORY_MODAL_OTEL_FILE`` does not count: it is ours, not the application's."""
    tracer = _settings.tracer_provider
    return (None if tracer is _settings.file_provider else tracer), _settings.meter_provider


def file_span_processor(path: str) -> Any:
    """A span processor writing each ended span as one JSON line to ``path`` (needs opentelemetry-sdk)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    lock = threading.Lock()

    class _JsonLinesExporter(SpanExporter):
        def export(self, spans: Any) -> Any:
            lines = [s.to_json(indent=None) for s in spans]
            with lock, open(path, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
            return SpanExportResult.SUCCESS

    return SimpleSpanProcessor(_JsonLinesExporter())


# ------------------------------------------------------------------------------------------------ attributes
def gen_ai_provider_name(provider: str, model: str) -> str:
    """``gen_ai.provider.name`` for a call: the vendor behind the model (``openai/gpt-4o`` -> ``openai``)."""
    if provider == "mock":
        return "mock"
    prefix, sep, _ = model.partition("/")
    if not sep:
        return "openai" if model.startswith(("gpt-", "o1", "o3", "o4")) else provider
    return _PROVIDER_NAMES.get(prefix, prefix)


def _request_attributes(options: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, attr in _OPTION_ATTRS.items():
        value = options.get(key)
        if value is None or isinstance(value, bool):
            continue
        if key == "stop":
            value = [value] if isinstance(value, str) else [str(v) for v in value]
        elif not isinstance(value, (int, float)):
            continue
        out[attr] = value
    if options.get("response_format") is not None or options.get("output_schema") is not None:
        out["gen_ai.output.type"] = "json"
    return out


_call_info: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("theory_modal_call_info", default=None)
_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("theory_modal_current_call", default=None)


@contextmanager
def call_context(**info: Any) -> Iterator[None]:
    """Label the provider calls made inside with ``ref``, ``mode``, ``request_id`` (the Modal handlers do this)."""
    merged = {**(_call_info.get() or {}), **{k: v for k, v in info.items() if v is not None}}
    token = _call_info.set(merged)
    try:
        yield
    finally:
        _call_info.reset(token)


# ------------------------------------------------------------------------------------------------ one call
class Call:
    """One provider call as telemetry sees it: its span, its counters, its log line. Made by :func:`start_call`."""

    def __init__(self, otel: _Otel | None, provider: str, model: str, options: Mapping[str, Any], prompt: object,
                 stream: bool) -> None:
        self._otel = otel
        self.provider = provider
        self.request_model = model
        self.streaming = stream
        self.started = time.perf_counter()
        info = _call_info.get() or {}
        self.info = info
        self.request_id = str(info.get("request_id") or os.urandom(8).hex())
        self.attempts = 0
        self.failed_models: list[str] = []
        self.reply: Any = None
        self.error: BaseException | None = None
        self.outcome = "ok"
        self.first_chunk_s: float | None = None
        self._finished = False
        self._common = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": gen_ai_provider_name(provider, model),
            "gen_ai.request.model": model,
        }
        self.span = None
        if otel is not None:
            attributes: dict[str, Any] = {**self._common, **_request_attributes(options)}
            if stream:
                attributes["gen_ai.request.stream"] = True
            attributes["theory_modal.request_id"] = self.request_id
            for key in ("ref", "mode"):
                if info.get(key):
                    attributes[f"theory_modal.{key}"] = str(info[key])
            if _settings.capture_content and isinstance(prompt, str):
                attributes.update(_input_content(prompt, options))
            self.span = otel.tracer.start_span(f"chat {model}", kind=otel.SpanKind.CLIENT, attributes=attributes)

    # ---------------------------------------------------------------- activation
    @contextmanager
    def _active(self) -> Iterator[None]:
        """Make this call current (for retry events) and its span the current span (for child spans)."""
        token = _current.set(self)
        otel_token = None
        if self.span is not None:
            otel_token = self._otel.context.attach(self._otel.trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            if otel_token is not None:
                self._otel.context.detach(otel_token)
            _current.reset(token)

    def __enter__(self) -> Call:
        self._cm = self._active()
        self._cm.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is not None:
                self.failed(exc)
        finally:
            self._cm.__exit__(None, None, None)
            self.finish()

    @contextmanager
    def opening(self) -> Iterator[None]:
        """Around a stream's opening: a failure here ends the call; success leaves it open for the stream."""
        try:
            with self._active():
                yield
        except BaseException as exc:
            self.failed(exc)
            self.finish()
            raise

    # ---------------------------------------------------------------- what happened
    def model_started(self, model: str) -> None:
        self.attempts += 1

    def retry(self, attempt: int, error: ProviderError, wait_s: float) -> None:
        self.attempts += 1
        if self.span is not None:
            self.span.add_event("theory_modal.retry", {
                "theory_modal.attempt": attempt + 1,
                "theory_modal.error.kind": error.kind,
                "error.type": type(error).__name__,
                "theory_modal.retry.wait_s": round(float(wait_s), 3),
                **({"gen_ai.request.model": error.model} if error.model else {}),
            })

    def fallback(self, from_model: str, to_model: str, error: ProviderError, models_tried: int) -> None:
        self.failed_models.append(from_model)
        if self.span is not None:
            self.span.add_event("theory_modal.fallback", {
                "theory_modal.fallback.from_model": from_model,
                "theory_modal.fallback.to_model": to_model,
                "theory_modal.fallback.models_tried": models_tried,
                "theory_modal.attempt": self.attempts,
                "theory_modal.error.kind": error.kind,
                "error.type": type(error).__name__,
            })

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        if self.span is not None:
            self.span.add_event(name, {"theory_modal.attempt": self.attempts, **attributes})

    def succeeded(self, reply: Any) -> None:
        self.reply = reply
        if self.span is None:
            return
        usage = getattr(reply, "usage", None) or {}
        attrs: dict[str, Any] = {
            "gen_ai.response.model": reply.model,
            "gen_ai.usage.input_tokens": int(usage.get("tokens_in") or 0),
            "gen_ai.usage.output_tokens": int(usage.get("tokens_out") or 0),
            "theory_modal.attempts": self.attempts,
        }
        if usage.get("usd_micros") is not None:
            attrs["theory_modal.usage.usd_micros"] = int(usage["usd_micros"])
        finish = getattr(reply, "finish_reason", None)
        if finish:
            attrs["gen_ai.response.finish_reasons"] = [str(finish)]
        if self.first_chunk_s is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = self.first_chunk_s
        if self.failed_models:
            attrs["theory_modal.fallback.failed_models"] = list(self.failed_models)
        if _settings.capture_content:
            import json

            attrs["gen_ai.output.messages"] = json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": redact(reply.text)}],
                  **({"finish_reason": str(finish)} if finish else {})}], ensure_ascii=False)
        self.span.set_attributes(attrs)

    def failed(self, exc: BaseException) -> None:
        if self.error is not None or self._finished:
            return
        self.error = exc
        self.outcome = getattr(exc, "kind", None) or type(exc).__name__
        if self.span is not None:
            self.span.set_attribute("error.type", type(exc).__name__)
            self.span.set_attribute("theory_modal.error.kind", str(self.outcome))
            self.span.set_attribute("theory_modal.attempts", self.attempts)
            if self.failed_models:
                self.span.set_attribute("theory_modal.fallback.failed_models", list(self.failed_models))
            # The class and kind only: upstream messages can quote the request.
            self.span.set_status(self._otel.Status(self._otel.StatusCode.ERROR, f"{type(exc).__name__} ({self.outcome})"))

    def cancelled(self) -> None:
        if self.error is None and self.reply is None:
            self.outcome = "cancelled"
            if self.span is not None:
                self.span.set_attribute("theory_modal.outcome", "cancelled")

    def finish(self) -> None:
        """End the span, record the metrics and write the log line: exactly once per call."""
        if self._finished:
            return
        self._finished = True
        elapsed = time.perf_counter() - self.started
        otel = self._otel
        if otel is not None:
            metric_attrs = dict(self._common)
            if self.reply is not None:
                metric_attrs["gen_ai.response.model"] = self.reply.model
            if self.error is not None:
                metric_attrs["error.type"] = type(self.error).__name__
            otel.duration.record(elapsed, metric_attrs)
            if self.first_chunk_s is not None:
                otel.first_chunk.record(self.first_chunk_s, metric_attrs)
            usage = getattr(self.reply, "usage", None)
            if usage:
                otel.token_usage.record(int(usage.get("tokens_in") or 0), {**metric_attrs, "gen_ai.token.type": "input"})
                otel.token_usage.record(int(usage.get("tokens_out") or 0), {**metric_attrs, "gen_ai.token.type": "output"})
            if self.span is not None:
                self.span.end()
        if _settings.call_log:
            _log_line(self, elapsed)

    # ---------------------------------------------------------------- streams
    def _first_chunk(self) -> None:
        if self.first_chunk_s is None:
            self.first_chunk_s = time.perf_counter() - self.started

    def stream(self, gen: Iterator[str]) -> Iterator[str]:
        """Wrap a stream generator (chunks, then a returned reply): the span stays open until it ends."""
        reply = None
        try:
            while True:
                with self._active():
                    try:
                        chunk = next(gen)
                    except StopIteration as stop:
                        reply = stop.value
                        self.succeeded(reply)
                        break
                self._first_chunk()
                yield chunk
        except GeneratorExit:
            self.cancelled()
            raise
        except BaseException as exc:
            self.failed(exc)
            raise
        finally:
            gen.close()
            self.finish()
        return reply

    async def astream(self, agen: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Async twin of :meth:`stream` (the final reply arrives as the last item)."""
        try:
            while True:
                with self._active():
                    try:
                        item = await agen.__anext__()
                    except StopAsyncIteration:
                        break
                if isinstance(item, str):
                    self._first_chunk()
                else:
                    self.succeeded(item)
                yield item
        except GeneratorExit:
            self.cancelled()
            raise
        except BaseException as exc:
            self.failed(exc)
            raise
        finally:
            await agen.aclose()
            self.finish()


class _NoCall(Call):
    """The call object when nothing is recorded: every hook does nothing, streams pass straight through."""

    span = None

    def __init__(self) -> None:  # no state on purpose: this is the fast path
        pass

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    @contextmanager
    def opening(self) -> Iterator[None]:
        yield

    def model_started(self, model: str) -> None:
        pass

    def retry(self, attempt: int, error: ProviderError, wait_s: float) -> None:
        pass

    def fallback(self, from_model: str, to_model: str, error: ProviderError, models_tried: int) -> None:
        pass

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        pass

    def succeeded(self, reply: Any) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        pass

    def finish(self) -> None:
        pass

    def stream(self, gen: Iterator[str]) -> Iterator[str]:
        return gen

    def astream(self, agen: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return agen


NO_CALL: Call = _NoCall()


def _input_content(prompt: str, options: Mapping[str, Any]) -> dict[str, str]:
    """Opt-in only: the input as ``gen_ai.input.messages`` / ``gen_ai.system_instructions`` (redacted)."""
    import json

    out = {"gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": redact(prompt)}]}], ensure_ascii=False)}
    system = options.get("system")
    if isinstance(system, str) and system:
        out["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": redact(system)}], ensure_ascii=False)
    return out


def _log_line(call: Call, elapsed_s: float) -> None:
    """One JSON object per call on ``theory_modal.calls``: ids, model, tokens, cost, latency, attempts, outcome.
    Never a key, never the prompt or the reply, never an upstream message."""
    import json

    usage = getattr(call.reply, "usage", None) or {}
    record = {
        "event": "llm_call",
        "request_id": call.request_id,
        "ref": call.info.get("ref"),
        "mode": call.info.get("mode"),
        "provider": call.provider,
        "requested_model": call.request_model,
        "model": call.reply.model if call.reply is not None else None,
        "stream": call.streaming,
        "tokens_in": usage.get("tokens_in"),
        "tokens_out": usage.get("tokens_out"),
        "usd_micros": usage.get("usd_micros"),
        "latency_ms": int(elapsed_s * 1000),
        "attempts": call.attempts,
        "fallbacks": list(call.failed_models),
        "outcome": call.outcome,
    }
    if call.span is not None:
        ctx = call.span.get_span_context()
        if ctx.is_valid:
            record["trace_id"] = format(ctx.trace_id, "032x")
    import logging  # here: a process without the call log never loads logging for it

    logging.getLogger(CALL_LOGGER).info(json.dumps(record, ensure_ascii=False, separators=(",", ":")))


# ------------------------------------------------------------------------------------------------ entry points
def idle() -> bool:
    """Whether :func:`start_call` would hand back :data:`NO_CALL` now (nothing could record a call): callers use
    it to skip building per-call state that only telemetry reads."""
    return not _settings.call_log and _load() is None


def start_call(provider: str, model: str, options: Mapping[str, Any], *, prompt: object = None,
               stream: bool = False) -> Call:
    """Begin recording one call (a span when OpenTelemetry is on; a log line when the call log is on).

    Use as ``with start_call(...) as call:`` for a call that ends in the block; streams use :meth:`Call.opening`
    and :meth:`Call.stream` so the span lasts until the stream ends."""
    otel = _load()
    if otel is None and not _settings.call_log:
        return NO_CALL
    return Call(otel, provider, model, options, prompt, stream)


def note_retry(attempt: int, error: ProviderError, wait_s: float) -> None:
    """Called by the retry loop before it waits: an event on the current call's span (attempt number, kind)."""
    call = _current.get()
    if call is not None:
        call.retry(attempt, error, wait_s)


def note_event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current call's span (e.g. ``theory_modal.reask`` from structured output)."""
    call = _current.get()
    if call is not None:
        call.event(name, attributes)


def inject_trace() -> dict[str, str] | None:
    """The current W3C trace context (``traceparent``, ``tracestate``) to put in a request, or ``None``."""
    otel = _load()
    if otel is None:
        return None
    carrier: dict[str, str] = {}
    otel.propagate.inject(carrier)
    out = {k: v for k, v in carrier.items() if k in TRACE_KEYS and isinstance(v, str)}
    return out if "traceparent" in out else None


@contextmanager
def remote_parent(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Continue a caller's trace: spans started inside are children of the caller's span."""
    otel = _load() if carrier else None
    if otel is None:
        yield
        return
    token = otel.context.attach(otel.propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel.context.detach(token)
