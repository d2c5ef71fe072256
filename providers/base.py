"""The front half every provider shares: validate the whole request before any network, into one
:class:`ChatRequest`, and build the OpenAI-shaped message list in the one documented order.

Order sent: the ``system`` option, then ``history`` (as given), then the prompt as the last user turn, then
(only on a re-ask) the feedback of the attempts that did not validate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from providers.attachments import Attachment
from providers.errors import InvalidRequestError
from providers.request import (
    check_attachments,
    check_history,
    check_model,
    check_options,
    check_output_retries,
    check_output_schema,
    check_prompt,
    check_tool_choice,
    check_tools,
)
from providers.structured import OutputSchema

__all__ = ["ChatRequest", "build_request", "openai_messages", "openai_tools", "openai_tool_choice"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A request that passed validation. ``options`` no longer holds ``system``: it is ``system``."""

    prompt: str
    model: str
    attachments: tuple[Attachment, ...] = ()
    options: dict[str, Any] | None = None
    system: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    output: OutputSchema | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, str] | None = None
    output_retries: int = 1


def build_request(
    prompt: object,
    *,
    model: str | None,
    default_model: str,
    attachments: Sequence[Attachment] | None = None,
    history: object = None,
    output_schema: object = None,
    tools: object = None,
    tool_choice: object = None,
    output_retries: object = 1,
    options: dict[str, Any] | None = None,
    extra_options: dict[str, tuple[type, ...]] | None = None,
    provider: str = "litellm",
) -> ChatRequest:
    """Validate everything a caller can pass; raise :class:`InvalidRequestError` naming the first bad field.
    ``provider`` picks the model grammar (LiteLLM's ``<provider>/<name>``, or the name rules only)."""
    prompt = check_prompt(prompt)
    model = check_model(model, default_model, provider=provider)
    if (attachments is None and history is None and output_schema is None and tools is None and tool_choice is None
            and type(output_retries) is int and output_retries == 1):
        # A plain text request (the hot path): only the options are left to check; the rest is its default.
        opts = check_options(dict(options) if options else {}, extra_options)
        return ChatRequest(prompt, model, options=opts, system=opts.pop("system", None))
    atts = check_attachments(attachments)
    opts = check_options(dict(options or {}), extra_options)
    hist = check_history(history)
    tool_list = check_tools(tools)
    choice = check_tool_choice(tool_choice, tool_list)
    output = check_output_schema(output_schema)
    retries = check_output_retries(output_retries)
    if output is not None and "response_format" in opts:
        raise InvalidRequestError("pass either output_schema or the response_format option, not both")
    system = opts.pop("system", None)
    return ChatRequest(prompt, model, atts, opts, system, hist, output, tool_list, choice, retries)


def _openai_turn(turn: dict[str, Any]) -> dict[str, Any]:
    out = dict(turn)
    if out.get("content") is None:
        out.pop("content", None)  # an assistant turn that only calls tools: no content key, as LiteLLM sends it
    if turn.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {
                    "name": c["name"],
                    "arguments": c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"]),
                },
            }
            for c in turn["tool_calls"]
        ]
    return out


def openai_messages(
    req: ChatRequest, user_content: Any = None, extra: Sequence[dict[str, Any]] = (), system: str | None = None
) -> list[dict[str, Any]]:
    """system, history, the prompt (``user_content`` overrides its content, e.g. with attachment parts), extra.
    ``system`` overrides ``req.system`` (a provider may add instructions to it)."""
    system = req.system if system is None else system
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    if req.history:
        messages.extend(_openai_turn(t) for t in req.history)
    messages.append({"role": "user", "content": req.prompt if user_content is None else user_content})
    if extra:
        messages.extend(_openai_turn(t) for t in extra)
    return messages


def openai_tools(req: ChatRequest) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t["name"], "description": t["description"], "parameters": t["parameters"]}}
        for t in req.tools
    ]


def openai_tool_choice(req: ChatRequest) -> str | dict[str, Any] | None:
    choice = req.tool_choice
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice
