"""The JSON wire format: what crosses process and Modal boundaries (requests, responses, stream ends, errors).

Requests and responses are plain JSON-safe dicts, because other services (in any language) send and read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from providers.attachments import Attachment
from providers.errors import InvalidRequestError, ProviderError, redact
from providers.fallback import check_fallbacks
from providers.request import check_options

__all__ = [
    "FIELDS",
    "MODES",
    "Request",
    "STREAM_END",
    "error_dict",
    "response_dict",
]

MODES = ("smoke", "live")
#: Every request field, in the order docs/wire.md lists them.
FIELDS = ("prompt", "model", "options", "attachments", "mode", "fallbacks", "trace")

#: W3C trace context: ``version-trace_id-parent_id-flags``, lowercase hex (https://www.w3.org/TR/trace-context/).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE_MAX = 512  # the W3C limit is 32 list members; a cap keeps a hostile caller from padding requests

#: Key of the last item a stream yields: ``{"__end__": <response dict>}``. Every item before it is a ``str``.
STREAM_END = "__end__"


@dataclass(frozen=True)
class Request:
    """A validated request. ``attachments`` are JSON-safe dicts ``{name, mime, data_b64}``."""

    prompt: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[dict[str, str], ...] = ()
    mode: str = "smoke"
    #: Models to try, in order, when ``model`` fails in a way another model can fix (providers.fallback).
    fallbacks: tuple[str, ...] | None = None
    #: The caller's W3C trace context ``{"traceparent", "tracestate"}``: the remote span continues its trace.
    trace: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, data: object) -> Request:
        """Validate a payload; errors name the field (``request.prompt``, ``request.options.temperature``, ...)."""
        if not isinstance(data, dict):
            raise InvalidRequestError(f"request must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise InvalidRequestError(f"request has unknown field(s) {sorted(unknown)}; fields: {', '.join(FIELDS)}")
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError("request.prompt must be a non-empty string")
        model = data.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip() or " " in model):
            raise InvalidRequestError(f"request.model must be a model string such as 'openai/gpt-4o-mini', got {model!r}")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise InvalidRequestError(f"request.options must be an object, got {type(options).__name__}")
        try:
            options = check_options(options, extra={"mock_error": (str,)})  # the provider checks its own
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"request.options: {exc}") from None
        mode = data.get("mode", "smoke")
        if mode not in MODES:
            raise InvalidRequestError(f"request.mode must be one of {', '.join(MODES)}, got {mode!r}")
        attachments = data.get("attachments") or []
        if not isinstance(attachments, (list, tuple)):
            raise InvalidRequestError("request.attachments must be a list of {name, mime, data_b64} objects")
        for i, a in enumerate(attachments):
            if not isinstance(a, dict) or not isinstance(a.get("data_b64"), str) or not isinstance(a.get("name"), str):
                raise InvalidRequestError(f"request.attachments[{i}] must be an object with 'name', 'mime' and 'data_b64'")
        fallbacks = data.get("fallbacks")
        if fallbacks is not None:
            fallbacks = check_fallbacks(fallbacks, "request.fallbacks")
        trace = _check_trace(data.get("trace"))
        return cls(prompt, model, dict(options), tuple(dict(a) for a in attachments), mode, fallbacks, trace)

    def to_dict(self) -> dict[str, Any]:
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
        return out

    def decoded_attachments(self) -> list[Attachment]:
        """Rebuild Attachment objects; content is re-sniffed and the size cap applies again."""
        return [Attachment.from_dict(a) for a in self.attachments]


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


def response_dict(ref: str, reply_dict: dict[str, Any]) -> dict[str, Any]:
    """The response: the LLMReply dict plus the ref that produced it."""
    return {"ref": ref, **reply_dict}


def error_dict(exc: BaseException) -> dict[str, Any]:
    """JSON-safe, secret-free description of a failure, for batch output."""
    if isinstance(exc, ProviderError):
        return exc.to_dict()
    return {"type": type(exc).__name__, "kind": getattr(exc, "kind", "error"), "message": redact(str(exc))}
