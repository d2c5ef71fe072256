"""The JSON Schema of the wire format (``docs/wire.md`` prints it; tests check every path against it).

``SCHEMA["$defs"]`` has one definition per shape: ``Request`` (with its ``Turn`` and ``ToolCall``),
``Response``, ``Usage``, ``Error``,
``StreamEvent`` (``StartEvent`` | ``DeltaEvent`` | ``DoneEvent``), ``MapItem`` (adapters' ``map``) and
``BatchLine`` (``theory-modal batch`` output). :func:`validate` checks
a value against one of them (it imports ``jsonschema``, a declared dependency, on first use).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "SHAPES", "validate"]

_MODE = {"enum": ["live", "smoke"]}
_NONNEG = {"type": "integer", "minimum": 0}

_RESPONSE_REQUIRED = ["ref", "mode", "text", "provider", "model", "usage", "finish_reason"]
_RESPONSE_PROPS: dict[str, Any] = {
    "ref": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*/[a-z][a-z0-9_-]*@[0-9]+$"},
    "mode": _MODE,
    "text": {"type": "string"},
    "provider": {"type": "string"},
    "model": {"type": "string"},
    "usage": {"$ref": "#/$defs/Usage"},
    "finish_reason": {"type": ["string", "null"]},
    "data": {"description": "the validated structured output, when an output_schema was given"},
    "tool_calls": {"type": "array", "items": {"$ref": "#/$defs/ToolCall"}},
}

#: What identifies a batch line: its 1-based input line, the input's own id, and the fingerprint of what it asked.
_BATCH_KEYS: dict[str, Any] = {
    "line": {"type": "integer", "minimum": 1},
    "id": {},
    "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://theory-modal/wire.schema.json",
    "title": "theory-modal wire format",
    "$defs": {
        "Request": {
            "type": "object",
            "required": ["prompt"],
            "additionalProperties": False,
            "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "mode": {**_MODE, "default": "live", "description": "live unless smoke is asked for"},
                "model": {"type": "string", "minLength": 1, "description": "<provider>/<name>, e.g. openai/gpt-4o-mini"},
                "options": {"type": "object", "description": "generation options (temperature, max_tokens, system, timeout, ...)"},
                "attachments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "data_b64"],
                        "properties": {
                            "name": {"type": "string"},
                            "mime": {"type": "string"},
                            "data_b64": {"type": "string"},
                        },
                    },
                },
                "fallbacks": {
                    "type": "array",
                    "maxItems": 8,
                    "items": {"type": "string", "minLength": 1},
                    "description": "models to try, in order, when the model fails in a way another model can fix",
                },
                "trace": {
                    "type": "object",
                    "required": ["traceparent"],
                    "additionalProperties": False,
                    "properties": {
                        "traceparent": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
                        "tracestate": {"type": "string", "maxLength": 512},
                    },
                    "description": "the caller's W3C trace context: the function's span continues it",
                },
                "history": {
                    "type": "array",
                    "maxItems": 1000,
                    "items": {"$ref": "#/$defs/Turn"},
                    "description": "the conversation before the prompt; sent after the system option, before the prompt",
                },
                "output_schema": {
                    "type": "object",
                    "description": "a JSON Schema the reply must validate against; the Response carries it as data",
                },
                "tools": {
                    "type": "array",
                    "maxItems": 128,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                            "description": {"type": "string"},
                            "parameters": {"type": "object", "description": "JSON Schema with \"type\": \"object\""},
                        },
                    },
                },
                "tool_choice": {
                    # anyOf: "none" is both a keyword and a valid tool name (the keyword wins; {"name": ...}
                    # always names a tool)
                    "anyOf": [
                        {"enum": ["auto", "none", "required"]},
                        {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$",
                         "description": "a tool name: call it ('auto', 'none' and 'required' are the keywords)"},
                        {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}},
                        },
                    ],
                },
                "output_retries": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 5,
                    "default": 1,
                    "description": "re-asks after a reply that does not validate",
                },
            },
        },
        "Turn": {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {"enum": ["system", "user", "assistant", "tool"]},
                "content": {"type": ["string", "null"], "description": "null only on an assistant turn with tool_calls"},
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "tool_calls": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/ToolCall"}},
                "tool_call_id": {"type": "string", "description": "on a tool turn: the call it answers"},
            },
            "additionalProperties": False,
        },
        "ToolCall": {
            "type": "object",
            "required": ["id", "name", "arguments"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
                "name": {"type": "string"},
                "arguments": {"type": "object"},
            },
        },
        "Usage": {
            "type": "object",
            "required": ["tokens_in", "tokens_out", "latency_ms", "usd_micros"],
            "additionalProperties": False,
            "properties": {
                "tokens_in": _NONNEG,
                "tokens_out": _NONNEG,
                "latency_ms": _NONNEG,
                "usd_micros": {"oneOf": [_NONNEG, {"type": "null"}], "description": "integer micro-USD; null when unknown"},
            },
        },
        "Response": {
            "type": "object",
            "required": _RESPONSE_REQUIRED,
            "additionalProperties": False,
            "properties": _RESPONSE_PROPS,
        },
        "Error": {
            "type": "object",
            "required": ["type", "kind", "message", "retryable"],
            "properties": {
                "type": {"type": "string", "description": "the exception class name, e.g. RateLimitError"},
                "kind": {"type": "string", "description": "stable short name, e.g. rate_limited"},
                "message": {"type": "string", "description": "one line, secret-free, says what to do"},
                "retryable": {"type": "boolean"},
                "provider": {"type": "string"},
                "model": {"type": "string"},
                "status_code": {"type": "integer"},
                "attempts": {"type": "integer"},
                "retry_after": {"type": "number"},
                "attempted": {
                    "type": "array",
                    "description": "with fallbacks: every model tried, in order",
                    "items": {"type": "object", "properties": {"model": {"type": "string"}, "kind": {"type": "string"},
                                                               "message": {"type": "string"}}},
                },
                "raw_text": {"type": "string", "description": "OutputValidationError: the last reply that did not validate"},
                "usage": {"$ref": "#/$defs/Usage", "description": "OutputValidationError: every attempt, summed"},
            },
        },
        "StartEvent": {
            "type": "object",
            "required": ["type", "function_call_id"],
            "additionalProperties": False,
            "properties": {"type": {"const": "start"}, "function_call_id": {"type": ["string", "null"]}},
        },
        "DeltaEvent": {
            "type": "object",
            "required": ["type", "text"],
            "additionalProperties": False,
            "properties": {"type": {"const": "delta"}, "text": {"type": "string"}},
        },
        "DoneEvent": {
            "type": "object",
            "required": ["type", "response"],
            "additionalProperties": False,
            "properties": {"type": {"const": "done"}, "response": {"$ref": "#/$defs/Response"}},
        },
        "StreamEvent": {
            "oneOf": [{"$ref": "#/$defs/StartEvent"}, {"$ref": "#/$defs/DeltaEvent"}, {"$ref": "#/$defs/DoneEvent"}]
        },
        "MapItem": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["index", *_RESPONSE_REQUIRED],
                    "additionalProperties": False,
                    "properties": {"index": _NONNEG, "id": {}, **_RESPONSE_PROPS},
                },
                {
                    "type": "object",
                    "required": ["index", "ref", "mode", "error"],
                    "additionalProperties": False,
                    "properties": {
                        "index": _NONNEG,
                        "id": {},
                        "ref": {"type": "string"},
                        "mode": _MODE,
                        "error": {"$ref": "#/$defs/Error"},
                    },
                },
            ]
        },
        "BatchLine": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["line", "fingerprint", *_RESPONSE_REQUIRED],
                    "additionalProperties": False,
                    "properties": {**_BATCH_KEYS, **_RESPONSE_PROPS},
                },
                {
                    "type": "object",
                    "required": ["line", "fingerprint", "ref", "mode", "error"],
                    "additionalProperties": False,
                    "properties": {**_BATCH_KEYS, "ref": {"type": "string"}, "mode": _MODE,
                                   "error": {"$ref": "#/$defs/Error"}},
                },
            ]
        },
    },
}

SHAPES = tuple(SCHEMA["$defs"])
_validators: dict[str, Any] = {}


def validate(shape: str, value: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``value`` is a valid ``shape`` (one of :data:`SHAPES`)."""
    if shape not in SCHEMA["$defs"]:
        raise KeyError(f"unknown wire shape {shape!r}; shapes: {', '.join(SHAPES)}")
    validator = _validators.get(shape)
    if validator is None:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{shape}"})
        _validators[shape] = validator
    validator.validate(value)
