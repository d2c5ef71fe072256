"""The JSON wire format: what crosses process and Modal boundaries (requests, responses, stream ends, errors).

Requests and responses are plain JSON-safe dicts, because other services (in any language) send and read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.attachments import Attachment
from providers.errors import InvalidRequestError, ProviderError, redact
from providers.request import check_history, check_options, check_output_retries, check_tool_choice, check_tools

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
    history: tuple[dict[str, Any], ...] = ()
    output_schema: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, str] | None = None
    output_retries: int | None = None

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
        structure = _structure(data)
        return cls(prompt, model, dict(options), tuple(dict(a) for a in attachments), mode, **structure)

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
        out: dict[str, Any] = {"prompt": self.prompt, "mode": self.mode}
        if self.model is not None:
            out["model"] = self.model
        if self.options:
            out["options"] = dict(self.options)
        if self.attachments:
            out["attachments"] = [dict(a) for a in self.attachments]
        out.update(self.chat_kwargs())
        return out

    def decoded_attachments(self) -> list[Attachment]:
        """Rebuild Attachment objects; content is re-sniffed and the size cap applies again."""
        return [Attachment.from_dict(a) for a in self.attachments]


#: Every request field; ``history``, ``output_schema`` (JSON Schema only: a pydantic class cannot cross a
#: process boundary, send ``Model.model_json_schema()``), ``tools``, ``tool_choice`` and ``output_retries``
#: mean what they mean for ``LLMProvider.chat``.
FIELDS = ("prompt", "model", "options", "attachments", "mode", "history", "output_schema", "tools", "tool_choice",
          "output_retries")


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
            from providers.request import check_output_schema

            check_output_schema(schema)
            out["output_schema"] = schema
        out["tools"] = check_tools(data.get("tools"))
        out["tool_choice"] = check_tool_choice(data.get("tool_choice"), out["tools"])
        if data.get("output_retries") is not None:
            out["output_retries"] = check_output_retries(data["output_retries"])
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"request.{exc}") from None
    return out


def response_dict(ref: str, reply_dict: dict[str, Any]) -> dict[str, Any]:
    """The response: the LLMReply dict plus the ref that produced it."""
    return {"ref": ref, **reply_dict}


def error_dict(exc: BaseException) -> dict[str, Any]:
    """JSON-safe, secret-free description of a failure, for batch output."""
    if isinstance(exc, ProviderError):
        return exc.to_dict()
    return {"type": type(exc).__name__, "kind": getattr(exc, "kind", "error"), "message": redact(str(exc))}
