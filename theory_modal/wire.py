"""The JSON wire format: what crosses process and Modal boundaries. Documented in ``docs/wire.md``.

Other services (in any language) send a **Request** and read a **Response**, a stream of **events**, a
**map item** per batch input, or an **error object**. Everything here is a plain JSON-safe dict; the JSON
Schema of each shape is :data:`theory_modal.wire_schema.SCHEMA`, and tests check every path against it.

- Request: ``prompt``, ``mode`` (``"live"`` unless ``"smoke"`` is asked for), ``model``, ``options``,
  ``attachments``, ``fallbacks``, ``trace``, ``history``, ``output_schema``, ``tools``, ``tool_choice``,
  ``output_retries``.
- Response: ``ref``, ``mode``, ``text``, ``provider``, ``model``, ``usage``, ``finish_reason`` (+ ``data`` /
  ``tool_calls`` when present).
- Stream events: ``{"type": "start", "function_call_id": ...}``, then ``{"type": "delta", "text": ...}`` ...,
  then exactly one ``{"type": "done", "response": <Response>}``.
- Error object: ``{"type", "kind", "message", "retryable"}`` (+ ``provider``, ``model``, ``status_code``,
  ``attempts``, ``retry_after`` when known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from providers.attachments import DEFAULT_MAX_BYTES, DEFAULT_MAX_TOTAL_BYTES, Attachment, check_dict
from providers.errors import InvalidRequestError, ProviderError, error_from_dict, redact
from providers.fallback import check_fallbacks
from providers.request import (
    check_history,
    check_model,
    check_options,
    check_output_retries,
    check_output_schema,
    check_tool_choice,
    check_tools,
)
from theory_modal import allowlist as _allowlist  # noqa: F401 - registers ModelNotAllowedError for error_from_dict

__all__ = [
    "DEFAULT_MODE",
    "FIELDS",
    "MODES",
    "REQUEST_FIELDS",
    "Request",
    "delta_event",
    "done_event",
    "error_dict",
    "error_from_remote",
    "map_error_item",
    "map_item",
    "remote_error",
    "response_dict",
    "start_event",
]

MODES = ("smoke", "live")
#: A payload without ``mode`` does the real work: a remote caller never gets a fake reply unless it asks.
DEFAULT_MODE = "live"
#: Fields a Request may carry. ``history``, ``output_schema``, ``tools``, ``tool_choice`` and ``output_retries``
#: mean what they mean for ``LLMProvider.chat``. A new field is added here, in :meth:`Request.from_dict` and
#: in the schema.
REQUEST_FIELDS: tuple[str, ...] = (
    "prompt", "mode", "model", "options", "attachments", "fallbacks", "trace",
    "history", "output_schema", "tools", "tool_choice", "output_retries",
)
#: The same tuple under its older name.
FIELDS = REQUEST_FIELDS

#: W3C trace context: ``version-trace_id-parent_id-flags``, lowercase hex (https://www.w3.org/TR/trace-context/).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE_MAX = 512  # the W3C limit is 32 list members; a cap keeps a hostile caller from padding requests


@dataclass(frozen=True)
class Request:
    """A validated request. ``attachments`` are JSON-safe dicts ``{name, mime, data_b64}``."""

    prompt: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[dict[str, str], ...] = ()
    mode: str = DEFAULT_MODE
    #: Models to try, in order, when ``model`` fails in a way another model can fix (providers.fallback).
    fallbacks: tuple[str, ...] | None = None
    #: The caller's W3C trace context ``{"traceparent", "tracestate"}``: the remote span continues its trace.
    trace: dict[str, str] | None = None
    #: The conversation before the prompt, as ``LLMProvider.chat(history=...)`` takes it.
    history: tuple[dict[str, Any], ...] = ()
    #: A JSON Schema object (a pydantic class cannot cross a process boundary: send ``Model.model_json_schema()``).
    output_schema: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, str] | None = None
    output_retries: int | None = None

    @classmethod
    def from_dict(cls, data: object, *, provider: str | None = None) -> Request:
        """Validate a payload; errors name the field (``request.prompt``, ``request.options.temperature``, ...).

        ``provider`` (the processor's) selects the model grammar: LiteLLM's ``<provider>/<name>``, or the
        name rules only for providers that name their own models. Attachments are checked in their JSON form
        (shape, per-item and total size from the base64 length) without decoding, so an adapter refuses an
        oversized payload before shipping it."""
        if not isinstance(data, dict):
            raise InvalidRequestError(f"request must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - set(REQUEST_FIELDS)
        if unknown:
            raise InvalidRequestError(
                f"request has unknown field(s) {sorted(map(str, unknown))}; fields: {', '.join(REQUEST_FIELDS)}"
            )
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError("request.prompt must be a non-empty string")
        model = data.get("model")
        if model is not None:
            try:
                model = check_model(model, provider=provider or "")
            except InvalidRequestError as exc:
                raise InvalidRequestError(f"request.model must be a model string such as 'openai/gpt-4o-mini': {exc}") from None
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise InvalidRequestError(f"request.options must be an object, got {type(options).__name__}")
        try:
            options = check_options(options, extra={"mock_error": (str,)})  # the provider checks its own
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"request.options: {exc}") from None
        mode = data.get("mode", DEFAULT_MODE)
        if mode not in MODES:
            raise InvalidRequestError(f"request.mode must be one of {', '.join(MODES)}, got {mode!r}")
        attachments = data.get("attachments") or []
        if not isinstance(attachments, (list, tuple)):
            raise InvalidRequestError("request.attachments must be a list of {name, mime, data_b64} objects")
        total = 0
        for i, a in enumerate(attachments):
            try:
                total += check_dict(a, max_bytes=DEFAULT_MAX_BYTES)
            except InvalidRequestError as exc:
                raise InvalidRequestError(f"request.attachments[{i}]: {exc}") from None
        if total > DEFAULT_MAX_TOTAL_BYTES:
            raise InvalidRequestError(
                f"request.attachments total about {total // (1024 * 1024)} MiB, over the "
                f"{DEFAULT_MAX_TOTAL_BYTES // (1024 * 1024)} MiB limit per request: send fewer or smaller files"
            )
        fallbacks = data.get("fallbacks")
        if fallbacks is not None:
            fallbacks = check_fallbacks(fallbacks, "request.fallbacks", provider=provider or "")
        trace = _check_trace(data.get("trace"))
        structure = _structure(data)
        return cls(prompt, model, dict(options), tuple(dict(a) for a in attachments), mode, fallbacks, trace,
                   **structure)

    def chat_kwargs(self) -> dict[str, Any]:
        """The conversation/structure/tool keyword arguments for ``LLMProvider.chat`` (only those given)."""
        out: dict[str, Any] = {}
        if self.history:
            out["history"] = [dict(t) for t in self.history]
        if self.output_schema is not None:
            out["output_schema"] = self.output_schema
        if self.tools:
            out["tools"] = [dict(t) for t in self.tools]
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        if self.output_retries is not None:
            out["output_retries"] = self.output_retries
        return out

    def to_dict(self) -> dict[str, Any]:
        """The payload to send: ``mode`` always explicit, so the receiver never has to guess."""
        out: dict[str, Any] = {"prompt": self.prompt, "mode": self.mode}
        if self.model is not None:
            out["model"] = self.model
        if self.options:
            out["options"] = dict(self.options)
        if self.attachments:
            out["attachments"] = [dict(a) for a in self.attachments]
        if self.fallbacks is not None:
            out["fallbacks"] = list(self.fallbacks)
        if self.trace:
            out["trace"] = dict(self.trace)
        out.update(self.chat_kwargs())
        return out

    def decoded_attachments(self) -> list[Attachment]:
        """Rebuild Attachment objects; content is re-sniffed and the size cap applies again."""
        return [Attachment.from_dict(a) for a in self.attachments]


def _structure(data: dict[str, Any]) -> dict[str, Any]:
    """Validate the conversation/structure/tool fields with the providers' own checks, named ``request.<field>``."""
    out: dict[str, Any] = {}
    try:
        out["history"] = check_history(data.get("history"))
        schema = data.get("output_schema")
        if schema is not None and not isinstance(schema, dict):
            raise InvalidRequestError(
                f"output_schema must be a JSON Schema object on the wire, got {type(schema).__name__}"
            )
        if schema is not None:
            check_output_schema(schema)
            out["output_schema"] = schema
        out["tools"] = check_tools(data.get("tools"))
        out["tool_choice"] = check_tool_choice(data.get("tool_choice"), out["tools"])
        if data.get("output_retries") is not None:
            out["output_retries"] = check_output_retries(data["output_retries"])
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"request.{exc}") from None
    return out


def _check_trace(trace: object) -> dict[str, str] | None:
    """``{"traceparent": "00-<32 hex>-<16 hex>-<2 hex>", "tracestate"?: "..."}`` or absent."""
    if trace is None:
        return None
    if not isinstance(trace, dict) or set(trace) - {"traceparent", "tracestate"}:
        raise InvalidRequestError('request.trace must be an object with "traceparent" (and optionally "tracestate")')
    parent, state = trace.get("traceparent"), trace.get("tracestate")
    if not isinstance(parent, str) or not _TRACEPARENT.fullmatch(parent):
        raise InvalidRequestError("request.trace.traceparent must be a W3C traceparent like '00-<32 hex>-<16 hex>-01'")
    if state is not None and (not isinstance(state, str) or len(state) > _TRACESTATE_MAX or not state.isprintable()):
        raise InvalidRequestError(f"request.trace.tracestate must be printable text of at most {_TRACESTATE_MAX} characters")
    return {"traceparent": parent, **({"tracestate": state} if state else {})}


def response_dict(ref: str, mode: str, reply_dict: dict[str, Any]) -> dict[str, Any]:
    """The Response: the reply's fields plus the ref and the mode that produced it (``finish_reason`` always
    present, ``None`` when the provider did not say)."""
    out: dict[str, Any] = {"ref": ref, "mode": mode, **reply_dict}
    out.setdefault("finish_reason", None)
    return out


# ------------------------------------------------------------------------------------------------ streams
def start_event(function_call_id: str | None) -> dict[str, Any]:
    """First event of every stream. On Modal ``function_call_id`` names the call, so a caller that stops
    early can cancel it (``modal.FunctionCall.from_id(id).cancel()``); ``None`` in-process."""
    return {"type": "start", "function_call_id": function_call_id}


def delta_event(text: str) -> dict[str, Any]:
    return {"type": "delta", "text": text}


def done_event(response: dict[str, Any]) -> dict[str, Any]:
    """Last event of a stream that finished: the full Response, with the final usage."""
    return {"type": "done", "response": response}


# ------------------------------------------------------------------------------------------------ errors
def error_dict(exc: BaseException) -> dict[str, Any]:
    """The error object: JSON-safe, secret-free; ``type`` is the exception class name, ``kind`` its stable
    short name, ``retryable`` whether the same call may succeed later."""
    if isinstance(exc, ProviderError):
        out = exc.to_dict()
        out["message"] = redact(str(out.get("message", "")))
    else:
        out = {"type": type(exc).__name__, "kind": getattr(exc, "kind", "error"), "message": redact(str(exc))}
    out["retryable"] = bool(getattr(exc, "retryable", False))
    return out


def map_item(index: int, response: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, **response}


def map_error_item(index: int, ref: str, mode: str, exc: BaseException) -> dict[str, Any]:
    """A failed batch input: it costs nobody else, and says what went wrong."""
    return {"index": index, "ref": ref, "mode": mode, "error": error_dict(exc)}


def remote_error(exc: ProviderError) -> RuntimeError:
    """The exception a Modal function raises for a provider error: a builtin ``RuntimeError`` (any caller with
    only ``modal`` installed can unpickle it) whose message is the original one line and whose ``error``
    attribute is the error object (``kind``, ``retryable``, ...). :func:`error_from_remote` reverses it."""
    err = RuntimeError(error_dict(exc)["message"])
    err.error = error_dict(exc)  # type: ignore[attr-defined]
    err.kind = err.error["kind"]  # type: ignore[attr-defined]
    err.retryable = err.error["retryable"]  # type: ignore[attr-defined]
    return err


def error_from_remote(exc: BaseException) -> BaseException:
    """A :func:`remote_error` back to the typed ProviderError it stands for; anything else unchanged."""
    error = getattr(exc, "error", None)
    if type(exc) is RuntimeError and isinstance(error, dict) and isinstance(error.get("kind"), str):
        return error_from_dict(error)
    return exc
