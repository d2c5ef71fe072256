"""Validation shared by every provider: prompt, model string, options, attachments.

Errors are :class:`InvalidRequestError` (a ``ValueError`` too) naming the field and the fix, raised before any
network. Every value a remote caller controls passes through here, so the ranges below are the contract:
numbers are finite and in range, collections are bounded, everything is JSON-safe.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

from providers.attachments import Attachment
from providers.deadline import check_timeout
from providers.errors import InvalidRequestError
from providers.model_names import check_model_string

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


def check_model(model: object, default: str | None = None, *, provider: str = "litellm") -> str:
    """The one gate every model string passes (provider, local adapter, remote payload, CLI, batch).

    ``None`` means ``default``. LiteLLM models must follow the grammar in :mod:`providers.model_names`
    (``<provider>/<name>``, vetted provider, no URL, host, traversal, query, fragment, whitespace or control
    character); other providers name their own models and get the name rules only."""
    if model is None:
        if default is None:
            raise InvalidRequestError("model is required, e.g. 'openai/gpt-4o-mini'")
        model = default
    return check_model_string(model, litellm=provider == "litellm")


#: Documented ranges of the numeric options (inclusive). Values outside, NaN and infinities are refused.
OPTION_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "max_tokens": (1, 10_000_000),
    "seed": (-(2**63), 2**63 - 1),
}
#: At most this many stop sequences, each 1..MAX_STOP_LENGTH characters.
MAX_STOP_SEQUENCES = 4
MAX_STOP_LENGTH = 256
#: ``response_format``: at most this deep and this many bytes as JSON.
MAX_JSON_DEPTH = 32
MAX_RESPONSE_FORMAT_BYTES = 64 * 1024
#: A system prompt longer than this is refused (it is sent on every call).
MAX_SYSTEM_LENGTH = 1_000_000


def _json_safe(value: object, where: str, depth: int = 0, limit: int = MAX_JSON_DEPTH) -> None:
    """Plain JSON only: dict with str keys, list, str, finite int/float, bool, None; at most ``limit`` levels
    deep (so nothing after this check, ``json.dumps`` included, can hit the recursion limit)."""
    if depth > limit:
        raise InvalidRequestError(f"{where[:200]} is nested more than {limit} levels deep")
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequestError(f"{where[:200]} holds a non-finite number ({value!r}); JSON has no NaN or infinity")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidRequestError(f"{where[:200]} has a non-string key {k!r:.60}; JSON object keys are strings")
            _json_safe(v, f"{where}.{k[:60]}", depth + 1, limit)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _json_safe(v, f"{where}[{i}]", depth + 1, limit)
        return
    raise InvalidRequestError(f"{where[:200]} holds a value of type {type(value).__name__}, which is not JSON")


def _check_number(key: str, value: object) -> None:
    lo, hi = OPTION_RANGES[key]
    integer = key in ("max_tokens", "seed")
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        want = "an integer" if integer else "a number"
        raise InvalidRequestError(f"option {key!r} must be {want}, got {type(value).__name__} {value!r:.60}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequestError(f"option {key!r} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidRequestError(f"option {key!r} must be between {lo:g} and {hi:g}, got {value!r:.60}")


def _check_stop(value: object) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidRequestError(f"option 'stop' must be a string or a list of strings, got {type(value).__name__}")
    if len(items) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(f"option 'stop' has {len(items)} sequences; at most {MAX_STOP_SEQUENCES} are allowed")
    for s in items:
        if not isinstance(s, str):
            raise InvalidRequestError(f"option 'stop' must hold strings only, got {type(s).__name__}")
        if not 1 <= len(s) <= MAX_STOP_LENGTH:
            raise InvalidRequestError(f"option 'stop': each sequence must be 1..{MAX_STOP_LENGTH} characters, got {len(s)}")


def _check_response_format(value: object) -> None:
    if not isinstance(value, dict):
        raise InvalidRequestError(f"option 'response_format' must be an object, got {type(value).__name__}")
    _json_safe(value, "option 'response_format'")
    if not isinstance(value.get("type"), str):
        raise InvalidRequestError(
            "option 'response_format' needs a string 'type' ('text', 'json_object' or 'json_schema')"
        )
    size = len(json.dumps(value, allow_nan=False).encode("utf-8"))
    if size > MAX_RESPONSE_FORMAT_BYTES:
        raise InvalidRequestError(
            f"option 'response_format' is {size} bytes as JSON, over the {MAX_RESPONSE_FORMAT_BYTES} byte limit"
        )


def check_options(options: dict[str, Any], extra: dict[str, tuple[type, ...]] | None = None) -> dict[str, Any]:
    """Check generation options: known names, types, finite values in their documented ranges, bounded and
    JSON-safe collections (:data:`OPTION_RANGES`). ``extra`` admits provider-specific ones (e.g. the mock's
    ``mock_error``), type-checked only."""
    if not isinstance(options, dict):
        raise InvalidRequestError(f"options must be an object, got {type(options).__name__}")
    known = OPTION_TYPES if not extra else {**OPTION_TYPES, **extra}
    for key, value in options.items():
        if not isinstance(key, str) or key not in known:
            raise InvalidRequestError(f"unknown option {key!r:.60}; known options: {', '.join(sorted(known))}")
        if value is None:
            continue
        if key in OPTION_RANGES:
            _check_number(key, value)
        elif key == "timeout":  # seconds: the whole call's deadline (providers.deadline)
            try:
                check_timeout(value, "option 'timeout'")
            except ValueError as e:
                raise InvalidRequestError(str(e)) from None
        elif key == "stop":
            _check_stop(value)
        elif key == "response_format":
            _check_response_format(value)
        elif key == "system":
            if not isinstance(value, str):
                raise InvalidRequestError(f"option 'system' must be a string, got {type(value).__name__}")
            if len(value) > MAX_SYSTEM_LENGTH:
                raise InvalidRequestError(f"option 'system' is {len(value)} characters, over {MAX_SYSTEM_LENGTH}")
        else:
            types = known[key]
            if isinstance(value, bool) and bool not in types or not isinstance(value, types):
                want = " or ".join(t.__name__ for t in types).replace("Real", "number")
                raise InvalidRequestError(f"option {key!r} must be {want}, got {type(value).__name__}")
            _json_safe(value, f"option {key!r}")
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
#: Schemas and tool-call arguments: at most this deep (pydantic schemas are flat: nesting goes to ``$defs``).
MAX_STRUCTURE_DEPTH = 64
#: A tool's description, and all tools together as JSON, at most this many characters.
MAX_TOOL_DESCRIPTION_CHARS = 100_000
MAX_TOOLS_CHARS = 500_000  # checking a schema costs ~6 us per character (jsonschema's meta-schema check)
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
    _json_safe(arguments, f"{where}['arguments']", limit=MAX_STRUCTURE_DEPTH)
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
        if not isinstance(role, str) or role not in HISTORY_KEYS:
            raise InvalidRequestError(f"{where}['role'] must be one of {', '.join(HISTORY_KEYS)}; got {role!r:.60}")
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


#: Keywords whose values are data, not subschemas: a "pattern" key inside them is not a pattern.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
#: Keywords whose values map names to subschemas (their keys may be any name, "default" included).
_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"})


def _bad_pattern(schema: object, path: str = "#") -> tuple[str, str] | None:
    """The first ``pattern`` / ``patternProperties`` key the matcher cannot compile, as (where, why). Patterns are
    matched with the ``regex`` module (bounded in time, see providers.structured); its syntax is ``re``'s, but
    a pattern one accepts and the other refuses must be refused here, before any network."""
    from providers.structured import pattern_error

    stack: list[tuple[object, str, bool]] = [(schema, path, False)]  # (node, where, is it a name -> subschema map)
    unevaluated = pattern_keys = None
    while stack:
        node, at, names = stack.pop()
        if isinstance(node, list):
            stack.extend((v, f"{at}/{i}", False) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        if names:  # e.g. properties: a property called "default" is a subschema, not data
            stack.extend((v, f"{at}/{k}", False) for k, v in node.items())
            continue
        found = []
        if isinstance(node.get("pattern"), str):
            found.append((node["pattern"], f"{at}/pattern"))
        if isinstance(node.get("patternProperties"), dict):
            found.extend((k, f"{at}/patternProperties") for k in node["patternProperties"])
            pattern_keys = pattern_keys or f"{at}/patternProperties"
        if "unevaluatedProperties" in node:
            unevaluated = unevaluated or f"{at}/unevaluatedProperties"
        for patrn, where in found:
            why = pattern_error(patrn)
            if why:
                return where, why
        stack.extend((v, f"{at}/{k}", k in _NAME_MAPS) for k, v in node.items() if k not in _DATA_KEYWORDS)
    if unevaluated and pattern_keys:
        # jsonschema decides which keys unevaluatedProperties covers with re.search over patternProperties:
        # no time limit there, and its helper cannot be handed the bounded matcher.
        return pattern_keys, ("patternProperties cannot be combined with unevaluatedProperties (use "
                              "additionalProperties, or list the properties)")
    return None


def _check_schema(schema: object, where: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{where} must be a JSON Schema (a dict), got {type(schema).__name__}")
    # Strict JSON first (string keys, no NaN/infinity, bounded depth): what is accepted here must cross the
    # wire as JSON too, and nothing below (json.dumps, jsonschema) may meet a RecursionError.
    _json_safe(schema, where, limit=MAX_STRUCTURE_DEPTH)
    size = len(json.dumps(schema))
    if size > MAX_SCHEMA_CHARS:
        raise InvalidRequestError(f"{where} is {size:,} characters of JSON; at most {MAX_SCHEMA_CHARS:,} are accepted")
    from providers.structured import compile_validator, dangling_refs, loops_forever, non_local_refs

    remote = non_local_refs(schema)
    if remote:
        at, ref = remote[0]
        raise InvalidRequestError(
            f"{where} has $ref {ref[:100]!r} at {at[:100]}: only references inside the schema ('#/$defs/...') are "
            "accepted (nothing is fetched); inline the referenced schema under $defs"
        )
    try:
        compile_validator(schema)
        dangling = dangling_refs(schema)
    except Exception as exc:  # noqa: BLE001 - jsonschema.SchemaError (and RecursionError on pathological input)
        message = getattr(exc, "message", None) or str(exc)
        raise InvalidRequestError(f"{where} is not a valid JSON Schema: {message[:300]}") from None
    if dangling:
        at, ref = dangling[0]
        raise InvalidRequestError(f"{where} has $ref {ref[:100]!r} at {at[:100]}, which points nowhere in the schema")
    bad = _bad_pattern(schema)
    if bad:
        at, why = bad
        raise InvalidRequestError(f"{where} has a pattern at {at[:100]} that cannot be matched: {why}")
    from providers.structured import VALIDATION_BUDGET, TooCostly

    try:
        loops = loops_forever(schema)
    except TooCostly:
        raise InvalidRequestError(
            f"{where} is too costly to check: validating a small value takes more than {VALIDATION_BUDGET:,} steps "
            "or too long (anyOf/oneOf/allOf branches that share $defs multiply, or a pattern backtracks); simplify it"
        ) from None
    if loops:
        raise InvalidRequestError(
            f"{where}: its $ref chain loops without ever reaching a type (e.g. {{\"$ref\": \"#\"}}); no value can "
            "be checked against it"
        )
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
    from providers.structured import within_budget

    with within_budget():  # one validation budget for every tool's probes: 128 costly schemas cost one budget
        return _check_tool_list(tools)


def _check_tool_list(tools: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    out: list[dict[str, Any]] = []
    chars = 0
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequestError(f"{where} must be a dict with 'name', 'description', 'parameters'")
        unknown = sorted(set(tool) - {"name", "description", "parameters"})
        if unknown:
            raise InvalidRequestError(f"{where}: unexpected key {unknown[0]!r} (a tool has name, description, parameters)")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidRequestError(f"{where}['name'] must be 1-64 letters, digits, '_' or '-'; got {name!r:.60}")
        if any(t["name"] == name for t in out):
            raise InvalidRequestError(f"{where}: tool name {name!r} is used twice")
        description = tool.get("description", "")
        if not isinstance(description, str):
            raise InvalidRequestError(f"{where}['description'] must be a string")
        if len(description) > MAX_TOOL_DESCRIPTION_CHARS:
            raise InvalidRequestError(
                f"{where}['description'] is {len(description):,} characters; at most {MAX_TOOL_DESCRIPTION_CHARS:,}"
            )
        params = tool.get("parameters", {"type": "object", "properties": {}})
        if isinstance(params, type) and callable(getattr(params, "model_json_schema", None)):
            params = params.model_json_schema()
        params = _check_schema(params, f"{where}['parameters']")
        if params.get("type") != "object":
            raise InvalidRequestError(f"{where}['parameters'] must be a JSON Schema with \"type\": \"object\"")
        chars += len(description) + len(json.dumps(params))
        if chars > MAX_TOOLS_CHARS:
            raise InvalidRequestError(f"tools are longer than {MAX_TOOLS_CHARS:,} characters as JSON: send fewer tools")
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
        if isinstance(choice["name"], str) and choice["name"] in names:
            return {"name": choice["name"]}  # a name, even a tool called "none": the dict form is unambiguous
        choice = choice["name"]
    elif choice in ("auto", "none", "required"):
        return None if choice == "auto" else choice  # type: ignore[return-value]
    if isinstance(choice, str) and choice in names:
        return {"name": choice}
    raise InvalidRequestError(
        f"tool_choice must be 'auto', 'none', 'required' or a tool name ({', '.join(names)[:300]}); "
        f"got {choice!r:.100}"
    )


def check_output_schema(schema: object) -> OutputSchema | None:
    """A JSON Schema dict or a pydantic model class -> :class:`~providers.structured.OutputSchema`."""
    if schema is None:
        return None
    from providers.structured import OutputSchema, _is_model_class

    if _is_model_class(schema):
        try:
            json_schema = schema.model_json_schema()
        except Exception as exc:  # noqa: BLE001 - a model whose schema pydantic cannot build
            raise InvalidRequestError(f"output_schema: {type(exc).__name__}: {str(exc)[:300]}") from None
        # The same checks as a dict schema: over an adapter the model travels as this JSON Schema, so a model
        # accepted in-process must not be refused remotely (size, refs, cost).
        _check_schema(json_schema, f"output_schema ({schema.__name__})")
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
