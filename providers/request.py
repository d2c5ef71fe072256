"""Validation shared by every provider: prompt, model string, options, attachments.

Errors are :class:`InvalidRequestError` (a ``ValueError`` too) naming the field and the fix, raised before any
network. Every value a remote caller controls passes through here, so the ranges below are the contract:
numbers are finite and in range, collections are bounded, everything is JSON-safe.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

from providers.attachments import Attachment
from providers.deadline import check_timeout
from providers.errors import InvalidRequestError
from providers.model_names import check_model_string

__all__ = ["OPTION_TYPES", "check_prompt", "check_model", "check_options", "check_attachments"]

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


def _json_safe(value: object, where: str, depth: int = 0) -> None:
    """Plain JSON only: dict with str keys, list, str, finite int/float, bool, None; bounded depth."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequestError(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep")
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequestError(f"{where} holds a non-finite number ({value!r}); JSON has no NaN or infinity")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidRequestError(f"{where} has a non-string key {k!r}; JSON object keys are strings")
            _json_safe(v, f"{where}.{k}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _json_safe(v, f"{where}[{i}]", depth + 1)
        return
    raise InvalidRequestError(f"{where} holds a value of type {type(value).__name__}, which is not JSON")


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
