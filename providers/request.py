"""Validation shared by every provider: prompt, model string, options, attachments.

Errors are :class:`InvalidRequestError` (a ``ValueError`` too) naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

from providers.attachments import Attachment
from providers.deadline import check_timeout
from providers.errors import InvalidRequestError

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
