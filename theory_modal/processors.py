"""Processor refs (``llm/litellm@1``) -> which Modal function runs them, and the request/response schema.

A ref is ``<kind>/<name>@<version>``; without ``@<version>`` it means the latest version. Requests and
responses are plain JSON-safe dicts, because they cross process and Modal boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from providers.attachments import Attachment
from providers.errors import InvalidRequestError
from providers.request import check_options

__all__ = [
    "Processor",
    "PROCESSORS",
    "MODES",
    "ProcessorRefError",
    "Request",
    "known_refs",
    "resolve",
    "response_dict",
]

MODES = ("smoke", "live")
_REF = re.compile(r"^(?P<kind>[a-z][a-z0-9_-]*)/(?P<name>[a-z][a-z0-9_-]*)(?:@(?P<version>[0-9]+))?$")


class ProcessorRefError(InvalidRequestError):
    """An unknown or malformed processor ref."""

    kind = "unknown_ref"


@dataclass(frozen=True, slots=True)
class Processor:
    """One versioned unit of work, run by the Modal functions ``<provider>_chat`` / ``<provider>_stream``."""

    kind: str
    name: str
    version: int
    provider: str  # registry name in providers.get_llm_provider
    description: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}@{self.version}"

    @property
    def chat_function(self) -> str:
        return f"{self.provider}_chat"

    @property
    def stream_function(self) -> str:
        return f"{self.provider}_stream"


#: Every processor this package serves. A new provider adds one line here (and one registration in providers).
PROCESSORS: tuple[Processor, ...] = (
    Processor("llm", "mock", 1, "mock", "deterministic mock replies; free; no network"),
    Processor("llm", "litellm", 1, "litellm", "OpenAI, Ollama, Anthropic, ... through LiteLLM"),
)


def known_refs() -> list[str]:
    return sorted(p.ref for p in PROCESSORS)


def resolve(ref: object) -> Processor:
    """``llm/litellm@1`` or ``llm/litellm`` (latest) -> Processor; anything else fails listing the known refs."""
    known = ", ".join(known_refs())
    m = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if m is None:
        raise ProcessorRefError(f"malformed processor ref {ref!r}: expected <kind>/<name>[@<version>]; known refs: {known}")
    candidates = [p for p in PROCESSORS if p.kind == m["kind"] and p.name == m["name"]]
    if m["version"] is not None:
        candidates = [p for p in candidates if p.version == int(m["version"])]
    if not candidates:
        raise ProcessorRefError(f"unknown processor ref {ref!r}; known refs: {known}")
    return max(candidates, key=lambda p: p.version)


@dataclass(frozen=True)
class Request:
    """A validated request. ``attachments`` are JSON-safe dicts ``{name, mime, data_b64}``."""

    prompt: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[dict[str, str], ...] = ()
    mode: str = "smoke"

    @classmethod
    def from_dict(cls, data: object) -> Request:
        """Validate a payload; errors name the field (``request.prompt``, ``request.options.temperature``, ...)."""
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
