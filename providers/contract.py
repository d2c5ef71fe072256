"""The provider contract: the reply shape and the protocol every provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from providers.usage import Usage, validate_usage

if TYPE_CHECKING:
    from providers.attachments import Attachment
    from providers.streams import AsyncChatStream, ChatStream

__all__ = ["LLMReply", "LLMProvider"]


@dataclass(frozen=True, slots=True)
class LLMReply:
    """One completed chat turn.

    ``provider`` is the registry name (``mock``, ``litellm``); ``model`` the model string the caller asked for
    (vendor-qualified for LiteLLM, e.g. ``openai/gpt-4o-mini``); ``usage`` see :mod:`providers.usage`.
    """

    text: str
    provider: str
    model: str
    usage: Usage

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict: this is how a reply crosses the Modal boundary."""
        return {"text": self.text, "provider": self.provider, "model": self.model, "usage": dict(self.usage)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMReply:
        if not isinstance(data, dict):
            raise ValueError(f"LLMReply.from_dict needs a dict, got {type(data).__name__}")
        for key in ("text", "provider", "model"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"LLMReply field {key!r} must be a string, got {data.get(key)!r}")
        return cls(data["text"], data["provider"], data["model"], validate_usage(dict(data.get("usage") or {})))


@runtime_checkable
class LLMProvider(Protocol):
    """What every provider offers. ``options`` are generation options (temperature, max_tokens, ...)."""

    name: str
    model_default: str

    def chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> LLMReply: ...

    def stream_chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> ChatStream: ...

    async def achat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> LLMReply: ...

    def astream_chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> AsyncChatStream: ...

