"""The deployment's model allow-list: ``THEORY_MODAL_ALLOWED_MODELS``, comma-separated glob patterns.

Read when the app is deployed and baked into the image environment (like ``THEORY_MODAL_APP``), so every
container enforces exactly what the deployer set. The function handler checks each call's model (the default
model included) after the model grammar, before the provider runs.

Default (unset or empty): any model that passes the grammar. The grammar is the security boundary (no
caller-chosen URL, host or key); the allow-list is the deployer's spending and policy choice, which no
built-in list could know and which would silently refuse every new model if it guessed. Deployments reachable
by callers you do not fully trust should set it, e.g. ``openai/gpt-4o-mini,ollama_chat/*``.
"""

from __future__ import annotations

import fnmatch
import os
from functools import lru_cache

from providers.errors import InvalidRequestError

__all__ = ["ENV_VAR", "ModelNotAllowedError", "allowed_patterns", "check_allowed"]

ENV_VAR = "THEORY_MODAL_ALLOWED_MODELS"


class ModelNotAllowedError(InvalidRequestError):
    """The model passes the grammar but this deployment does not serve it."""

    kind = "model_not_allowed"


@lru_cache(maxsize=16)
def _parse(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def allowed_patterns(value: str | None = None) -> tuple[str, ...]:
    """The patterns in force (``()`` means any model); ``value`` defaults to the environment's."""
    return _parse(os.environ.get(ENV_VAR, "") if value is None else value)


def check_allowed(model: str, patterns: tuple[str, ...] | None = None) -> str:
    """Return ``model`` if a pattern matches it (case-sensitive glob), else raise ModelNotAllowedError."""
    patterns = allowed_patterns() if patterns is None else patterns
    if not patterns or any(fnmatch.fnmatchcase(model, p) for p in patterns):
        return model
    shown = ", ".join(patterns) if len(patterns) <= 8 else ", ".join(patterns[:8]) + ", ..."
    raise ModelNotAllowedError(
        f"model {model!r} is not allowed by this deployment ({ENV_VAR}: {shown}); use an allowed model or "
        f"ask the deployer to add it to {ENV_VAR} and redeploy"
    )
