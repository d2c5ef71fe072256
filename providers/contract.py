"""The provider contract: the reply shape and the protocol every provider implements."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from providers.usage import Usage, validate_usage

if TYPE_CHECKING:
    from providers.attachments import Attachment
    from providers.streams import AsyncChatStream, ChatStream

__all__ = ["LLMReply", "LLMProvider", "ToolCall"]

#: One tool call the model asked for: ``{"id": str, "name": str, "arguments": dict}`` (arguments validated
#: against the tool's ``parameters`` schema). Plain dicts, so they go back into ``history`` as they are.
ToolCall = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LLMReply:
    """One completed chat turn.

    ``provider`` is the registry name (``mock``, ``litellm``); ``model`` the model string the caller asked for
    (vendor-qualified for LiteLLM, e.g. ``openai/gpt-4o-mini``); ``usage`` see :mod:`providers.usage`.

    The seed's four fields stay positional; the rest are keyword fields with defaults:

    - ``finish_reason``: why the model stopped (``"stop"``, ``"length"``, ``"tool_calls"``, ...), ``None`` when
      the provider did not say;
    - ``data``: with ``output_schema``, the validated reply (a dict/list/..., or an instance of the pydantic model
      class passed); ``text`` then holds the raw JSON;
    - ``tool_calls``: with ``tools``, the calls the model asked for, ``[{"id", "name", "arguments": dict}]``.
    """

    text: str
    provider: str
    model: str
    usage: Usage
    _: KW_ONLY
    finish_reason: str | None = None
    data: Any = None
    tool_calls: list[ToolCall] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict: this is how a reply crosses the Modal boundary. A pydantic ``data`` is dumped to
        JSON-mode plain data; ``data`` and ``tool_calls`` appear only when present."""
        out: dict[str, Any] = {
            "text": self.text,
            "provider": self.provider,
            "model": self.model,
            "usage": dict(self.usage),
            "finish_reason": self.finish_reason,
        }
        if self.data is not None:
            dump = getattr(self.data, "model_dump", None)
            out["data"] = dump(mode="json") if callable(dump) else self.data
        if self.tool_calls is not None:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, output_schema: Any = None) -> LLMReply:
        """Inverse of :meth:`to_dict`. Pass the pydantic model class as ``output_schema`` to get ``data`` back as
        an instance of it (a JSON Schema dict, or nothing, leaves ``data`` as plain JSON)."""
        if not isinstance(data, dict):
            raise ValueError(f"LLMReply.from_dict needs a dict, got {type(data).__name__}")
        for key in ("text", "provider", "model"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"LLMReply field {key!r} must be a string, got {data.get(key)!r}")
        finish = data.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise ValueError(f"LLMReply field 'finish_reason' must be a string or null, got {finish!r}")
        calls = data.get("tool_calls")
        if calls is not None:
            calls = _check_tool_calls(calls)
        value = data.get("data")
        if value is not None and isinstance(output_schema, type) and hasattr(output_schema, "model_validate_json"):
            # JSON mode, as the provider validated the model's text: a strict model takes "2024-01-02" for a
            # date from JSON but not from a Python str, so python-mode validation refused what chat() accepted.
            value = output_schema.model_validate_json(json.dumps(value))
        return cls(
            data["text"], data["provider"], data["model"], validate_usage(dict(data.get("usage") or {})),
            finish_reason=finish, data=value, tool_calls=calls,
        )


def _check_tool_calls(calls: object) -> list[ToolCall]:
    if not isinstance(calls, list):
        raise ValueError(f"LLMReply field 'tool_calls' must be a list, got {type(calls).__name__}")
    out = []
    for i, call in enumerate(calls):
        if not (
            isinstance(call, dict)
            and isinstance(call.get("id"), str)
            and isinstance(call.get("name"), str)
            and isinstance(call.get("arguments"), dict)
        ):
            raise ValueError(f"LLMReply tool_calls[{i}] must be {{'id': str, 'name': str, 'arguments': dict}}")
        out.append({"id": call["id"], "name": call["name"], "arguments": call["arguments"]})
    return out


@runtime_checkable
class LLMProvider(Protocol):
    """What every provider offers. ``options`` are generation options (temperature, max_tokens, ...).

    ``history`` is the conversation before ``prompt`` (sent after the ``system`` option, before the prompt);
    ``output_schema`` (JSON Schema dict or pydantic model class) asks for validated ``reply.data``, re-asked up
    to ``output_retries`` times; ``tools``/``tool_choice`` let the model ask for ``reply.tool_calls``.
    """

    name: str
    model_default: str

    def chat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> LLMReply: ...

    def stream_chat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> ChatStream: ...

    async def achat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> LLMReply: ...

    def astream_chat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> AsyncChatStream: ...

