"""Validation shared by every provider: prompt, model string, options, attachments.

Errors are :class:`InvalidRequestError` (a ``ValueError`` too) naming the field and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

from providers.attachments import Attachment
from providers.deadline import check_timeout
from providers.errors import InvalidRequestError

if TYPE_CHECKING:
    from providers.structured import OutputSchema

__all__ = [
    "OPTION_TYPES",
    "check_prompt",
    "check_model",
    "check_options",
    "check_attachments",
    "check_history",
    "check_tools",
    "check_tool_choice",
    "check_output_schema",
    "check_output_retries",
]

_NUMBER = (Real,)

#: Generation options every provider accepts, with their expected types. ``system`` is a system prompt.
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "max_tokens": (int,),
    "seed": (int,),
    "stop": (str, list),
    "presence_penalty": _NUMBER,
    "frequency_penalty": _NUMBER,
    "response_format": (dict,),
    "system": (str,),
    "timeout": _NUMBER,  # seconds: a deadline for this whole call (retries, stream), see providers.deadline
}


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise InvalidRequestError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidRequestError("prompt is empty: pass the text to send to the model")
    return prompt


def check_model(model: object, default: str) -> str:
    if model is None:
        return default
    if not isinstance(model, str) or not model.strip() or any(c.isspace() for c in model):
        raise InvalidRequestError(
            f"model must be a non-empty string without spaces, e.g. 'openai/gpt-4o-mini'; got {model!r}"
        )
    return model


def check_options(options: dict[str, Any], extra: dict[str, tuple[type, ...]] | None = None) -> dict[str, Any]:
    """Type-check generation options. ``extra`` admits provider-specific ones (e.g. the mock's ``mock_error``)."""
    known = OPTION_TYPES if not extra else {**OPTION_TYPES, **extra}
    for key, value in options.items():
        types = known.get(key)
        if types is None:
            raise InvalidRequestError(f"unknown option {key!r}; known options: {', '.join(sorted(known))}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types).replace("Real", "number")
            raise InvalidRequestError(f"option {key!r} must be {want}, got {type(value).__name__} {value!r}")
        if key == "max_tokens" and value <= 0:
            raise InvalidRequestError(f"option 'max_tokens' must be positive, got {value}")
        if key == "temperature" and not 0 <= value <= 2:
            raise InvalidRequestError(f"option 'temperature' must be between 0 and 2, got {value}")
        if key == "timeout":
            try:
                check_timeout(value, "option 'timeout'")
            except ValueError as e:
                raise InvalidRequestError(str(e)) from None
        if key == "stop" and isinstance(value, list) and not all(isinstance(s, str) for s in value):
            raise InvalidRequestError("option 'stop' must be a string or a list of strings")
    return {k: v for k, v in options.items() if v is not None}


def check_attachments(attachments: Sequence[Attachment] | None) -> tuple[Attachment, ...]:
    if attachments is None:
        return ()
    if isinstance(attachments, (str, bytes, Attachment)) or not isinstance(attachments, Sequence):
        raise InvalidRequestError("attachments must be a list of Attachment objects (Attachment.from_path(...))")
    for i, a in enumerate(attachments):
        if not isinstance(a, Attachment):
            raise InvalidRequestError(
                f"attachments[{i}] must be an Attachment (use Attachment.from_path or from_bytes), got {type(a).__name__}"
            )
    return tuple(attachments)


# --------------------------------------------------------------------------------------- conversations, tools
#: Roles a history turn may have, and the keys each may carry.
HISTORY_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "tool_calls", "name"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
MAX_HISTORY_TURNS = 1000
MAX_HISTORY_CHARS = 2_000_000
MAX_TOOLS = 128
MAX_SCHEMA_CHARS = 100_000
MAX_OUTPUT_RETRIES = 5
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CALL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def _check_call(call: object, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or set(call) - {"id", "name", "arguments"}:
        raise InvalidRequestError(f"{where} must be {{'id': str, 'name': str, 'arguments': dict}} (as in reply.tool_calls)")
    if not isinstance(call.get("id"), str) or not _CALL_ID.fullmatch(call["id"]):
        raise InvalidRequestError(f"{where}['id'] must be 1-128 characters of letters, digits, '_', '-', '.', ':'")
    if not isinstance(call.get("name"), str) or not _TOOL_NAME.fullmatch(call["name"]):
        raise InvalidRequestError(f"{where}['name'] must be a tool name (1-64 letters, digits, '_' or '-')")
    arguments = call.get("arguments", {})
    if not isinstance(arguments, dict):
        raise InvalidRequestError(f"{where}['arguments'] must be a dict (the parsed arguments)")
    return {"id": call["id"], "name": call["name"], "arguments": arguments}


def check_history(history: object) -> tuple[dict[str, Any], ...]:
    """Validate a conversation: a list of ``{"role", "content"}`` turns. Assistant turns may carry
    ``tool_calls`` (as in ``reply.tool_calls``); each must be answered by ``tool`` turns (``tool_call_id``)
    right after it, and a tool turn must answer such a call. Returns normalized copies."""
    if history is None:
        return ()
    if isinstance(history, (str, bytes, dict)) or not isinstance(history, Sequence):
        raise InvalidRequestError("history must be a list of {'role': ..., 'content': ...} turns")
    if len(history) > MAX_HISTORY_TURNS:
        raise InvalidRequestError(f"history has {len(history)} turns; at most {MAX_HISTORY_TURNS} are accepted")
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # call ids the previous assistant turn made, not answered yet
    chars = 0
    for i, turn in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(turn, dict):
            raise InvalidRequestError(f"{where} must be a dict with 'role' and 'content', got {type(turn).__name__}")
        role = turn.get("role")
        if role not in HISTORY_KEYS:
            raise InvalidRequestError(f"{where}['role'] must be one of {', '.join(HISTORY_KEYS)}; got {role!r}")
        unknown = sorted(set(turn) - HISTORY_KEYS[role])
        if unknown:
            raise InvalidRequestError(
                f"{where}: a {role} turn takes {', '.join(sorted(HISTORY_KEYS[role]))}; unexpected key {unknown[0]!r}"
            )
        content = turn.get("content")
        calls = turn.get("tool_calls")
        if content is None and not (role == "assistant" and calls):
            raise InvalidRequestError(f"{where}['content'] must be a string")
        if content is not None and not isinstance(content, str):
            raise InvalidRequestError(
                f"{where}['content'] must be a string, got {type(content).__name__}"
                + (" (json.dumps the tool's result)" if role == "tool" else "")
            )
        if "name" in turn and (not isinstance(turn["name"], str) or not _TOOL_NAME.fullmatch(turn["name"])):
            raise InvalidRequestError(f"{where}['name'] must be 1-64 letters, digits, '_' or '-'")
        chars += len(content or "")
        clean: dict[str, Any] = {"role": role, "content": content}
        if "name" in turn:
            clean["name"] = turn["name"]
        if role == "tool":
            call_id = turn.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in pending:
                raise InvalidRequestError(
                    f"{where} answers tool call {call_id!r}, which the assistant turn just before it did not make: "
                    "a tool turn must follow the assistant turn whose tool_calls holds its id"
                )
            pending.remove(call_id)
            clean["tool_call_id"] = call_id
        elif pending:
            raise InvalidRequestError(
                f"{where}: tool call(s) {', '.join(pending)} of the assistant turn before have no tool turn: "
                "answer every call with {'role': 'tool', 'tool_call_id': ..., 'content': ...} first"
            )
        if calls is not None:
            if not isinstance(calls, list) or not calls:
                raise InvalidRequestError(f"{where}['tool_calls'] must be a non-empty list (as in reply.tool_calls)")
            clean["tool_calls"] = [_check_call(c, f"{where}['tool_calls'][{j}]") for j, c in enumerate(calls)]
            ids = [c["id"] for c in clean["tool_calls"]]
            if len(set(ids)) != len(ids):
                raise InvalidRequestError(f"{where}['tool_calls'] repeats a call id")
            pending = ids
            chars += sum(len(json.dumps(c["arguments"])) for c in clean["tool_calls"])
        if chars > MAX_HISTORY_CHARS:
            raise InvalidRequestError(f"history is longer than {MAX_HISTORY_CHARS:,} characters: shorten it")
        out.append(clean)
    if pending:
        raise InvalidRequestError(
            f"history ends with unanswered tool call(s) {', '.join(pending)}: add a tool turn for each"
        )
    return tuple(out)


def _check_schema(schema: object, where: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{where} must be a JSON Schema (a dict), got {type(schema).__name__}")
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"{where} must be plain JSON: {exc}") from None
    if size > MAX_SCHEMA_CHARS:
        raise InvalidRequestError(f"{where} is {size:,} characters of JSON; at most {MAX_SCHEMA_CHARS:,} are accepted")
    from providers.structured import compile_validator

    try:
        compile_validator(schema)
    except Exception as exc:  # noqa: BLE001 - jsonschema.SchemaError (and RecursionError on pathological input)
        message = getattr(exc, "message", None) or str(exc)
        raise InvalidRequestError(f"{where} is not a valid JSON Schema: {message[:300]}") from None
    return schema


def check_tools(tools: object) -> tuple[dict[str, Any], ...]:
    """Validate ``[{"name", "description"?, "parameters"?: JSON Schema of an object}]``; returns normalized
    copies with ``parameters`` defaulted to an empty object schema."""
    if tools is None:
        return ()
    if isinstance(tools, (str, bytes, dict)) or not isinstance(tools, Sequence):
        raise InvalidRequestError("tools must be a list of {'name', 'description', 'parameters'} dicts")
    if len(tools) > MAX_TOOLS:
        raise InvalidRequestError(f"{len(tools)} tools given; at most {MAX_TOOLS} are accepted")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequestError(f"{where} must be a dict with 'name', 'description', 'parameters'")
        unknown = sorted(set(tool) - {"name", "description", "parameters"})
        if unknown:
            raise InvalidRequestError(f"{where}: unexpected key {unknown[0]!r} (a tool has name, description, parameters)")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidRequestError(f"{where}['name'] must be 1-64 letters, digits, '_' or '-'; got {name!r}")
        if any(t["name"] == name for t in out):
            raise InvalidRequestError(f"{where}: tool name {name!r} is used twice")
        description = tool.get("description", "")
        if not isinstance(description, str):
            raise InvalidRequestError(f"{where}['description'] must be a string")
        params = tool.get("parameters", {"type": "object", "properties": {}})
        if isinstance(params, type) and callable(getattr(params, "model_json_schema", None)):
            params = params.model_json_schema()
        params = _check_schema(params, f"{where}['parameters']")
        if params.get("type") != "object":
            raise InvalidRequestError(f"{where}['parameters'] must be a JSON Schema with \"type\": \"object\"")
        out.append({"name": name, "description": description, "parameters": params})
    return tuple(out)


def check_tool_choice(choice: object, tools: Sequence[dict[str, Any]]) -> str | dict[str, str] | None:
    """``None``/``"auto"``, ``"none"``, ``"required"``, or a tool name (or ``{"name": ...}``) to force that tool.
    Returns ``None`` (auto), one of the strings, or ``{"name": ...}``."""
    if choice is None:
        return None
    if not tools:
        raise InvalidRequestError("tool_choice was given without tools: pass tools=[...] too")
    names = [t["name"] for t in tools]
    if isinstance(choice, dict) and set(choice) == {"name"}:
        choice = choice["name"]
    if choice in ("auto", "none", "required"):
        return None if choice == "auto" else choice  # type: ignore[return-value]
    if isinstance(choice, str) and choice in names:
        return {"name": choice}
    raise InvalidRequestError(
        f"tool_choice must be 'auto', 'none', 'required' or a tool name ({', '.join(names)}); got {choice!r}"
    )


def check_output_schema(schema: object) -> OutputSchema | None:
    """A JSON Schema dict or a pydantic model class -> :class:`~providers.structured.OutputSchema`."""
    if schema is None:
        return None
    from providers.structured import OutputSchema, _is_model_class

    if _is_model_class(schema):
        try:
            return OutputSchema.of(schema)
        except Exception as exc:  # noqa: BLE001 - a model whose schema pydantic cannot build
            raise InvalidRequestError(f"output_schema: {type(exc).__name__}: {str(exc)[:300]}") from None
    if not isinstance(schema, dict):
        raise InvalidRequestError(
            f"output_schema must be a JSON Schema dict or a pydantic model class, got {type(schema).__name__}"
        )
    return OutputSchema.of(_check_schema(schema, "output_schema"))


def check_output_retries(retries: object) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_OUTPUT_RETRIES:
        raise InvalidRequestError(f"output_retries must be an int from 0 to {MAX_OUTPUT_RETRIES}, got {retries!r}")
    return retries
