"""The JSON wire format: what crosses process and Modal boundaries (requests, responses, stream ends, errors).

Requests and responses are plain JSON-safe dicts, because other services (in any language) send and read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.attachments import DEFAULT_MAX_BYTES, DEFAULT_MAX_TOTAL_BYTES, Attachment, check_dict
from providers.errors import InvalidRequestError, ProviderError, redact
from providers.request import check_model, check_options

__all__ = [
    "MODES",
    "Request",
    "STREAM_END",
    "error_dict",
    "response_dict",
]

MODES = ("smoke", "live")

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

    @classmethod
    def from_dict(cls, data: object, *, provider: str | None = None) -> Request:
        """Validate a payload; errors name the field (``request.prompt``, ``request.options.temperature``, ...).

        ``provider`` (the processor's) selects the model grammar: LiteLLM's ``<provider>/<name>``, or the
        name rules only for providers that name their own models. Attachments are checked in their JSON form
        (shape, per-item and total size from the base64 length) without decoding, so an adapter refuses an
        oversized payload before shipping it."""
        if not isinstance(data, dict):
            raise InvalidRequestError(f"request must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"prompt", "model", "options", "attachments", "mode"}
        if unknown:
            raise InvalidRequestError(
                f"request has unknown field(s) {sorted(unknown)}; fields: prompt, model, options, attachments, mode"
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
        mode = data.get("mode", "smoke")
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
        return cls(prompt, model, dict(options), tuple(dict(a) for a in attachments), mode)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": self.prompt, "mode": self.mode}
        if self.model is not None:
            out["model"] = self.model
        if self.options:
            out["options"] = dict(self.options)
        if self.attachments:
            out["attachments"] = [dict(a) for a in self.attachments]
        return out

    def decoded_attachments(self) -> list[Attachment]:
        """Rebuild Attachment objects; content is re-sniffed and the size cap applies again."""
        return [Attachment.from_dict(a) for a in self.attachments]


def response_dict(ref: str, reply_dict: dict[str, Any]) -> dict[str, Any]:
    """The response: the LLMReply dict plus the ref that produced it."""
    return {"ref": ref, **reply_dict}


def error_dict(exc: BaseException) -> dict[str, Any]:
    """JSON-safe, secret-free description of a failure, for batch output."""
    if isinstance(exc, ProviderError):
        return exc.to_dict()
    return {"type": type(exc).__name__, "kind": getattr(exc, "kind", "error"), "message": redact(str(exc))}
