"""Provider errors: a shallow hierarchy under RuntimeError, so the seed contract (``RuntimeError``) holds.

Every message says what went wrong and what to do about it, and never contains a secret: messages built from
upstream text go through :func:`redact` first.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "ProviderError",
    "ProviderUnavailableError",
    "CredentialsError",
    "ModelNotFoundError",
    "RateLimitError",
    "ProviderTimeoutError",
    "InvalidRequestError",
    "ContextWindowExceededError",
    "UnsupportedAttachmentError",
    "UnknownProviderError",
    "MissingDependencyError",
    "redact",
]


class ProviderError(RuntimeError):
    """Base class. ``retryable`` says whether trying the same call again later can succeed."""

    retryable: bool = False
    #: Short stable name of the class, used when an error crosses a process boundary as data.
    kind: str = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.attempts = attempts
        #: Set by a fallback chain: ``[{"model", "kind", "message"}, ...]``, every model tried, in order.
        self.attempted: list[dict[str, str]] | None = None

    def to_dict(self) -> dict:
        """JSON-safe form for batch output and for crossing the Modal boundary."""
        out = {"type": type(self).__name__, "kind": self.kind, "message": self.message}
        for key in ("provider", "model", "status_code", "attempts", "attempted"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class ProviderUnavailableError(ProviderError):
    """The provider could not be reached, or kept failing on its side (5xx) after our retries."""

    retryable = True
    kind = "unavailable"


class CredentialsError(ProviderUnavailableError):
    """The API key is missing, or the provider rejected it (401/403). Not retried."""

    retryable = False
    kind = "credentials"


class ModelNotFoundError(ProviderError):
    """The model does not exist at the provider, or (Ollama) has not been pulled."""

    kind = "model_not_found"


class RateLimitError(ProviderError):
    """429 after our retries. ``retry_after`` is the provider's hint in seconds, when it gave one."""

    retryable = True
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class ProviderTimeoutError(ProviderError):
    """The call did not finish within its ``timeout`` (a deadline for the whole call: retries, back-off, a
    stream to its last chunk), or the provider itself timed out (408/504) on every attempt."""

    retryable = True
    kind = "timeout"


class InvalidRequestError(ProviderError, ValueError):
    """The request itself is wrong (bad prompt, bad option, 400/422). Fix the input; retrying will not help."""

    kind = "invalid_request"


class ContextWindowExceededError(InvalidRequestError):
    """The prompt (plus attachments) is longer than the model's context window."""

    kind = "context_window_exceeded"


class UnsupportedAttachmentError(InvalidRequestError):
    """An attachment the provider or model cannot take (type, size, or a model without vision)."""

    kind = "unsupported_attachment"


class UnknownProviderError(ProviderError, KeyError):
    """``get_llm_provider`` was asked for a name nobody registered."""

    kind = "unknown_provider"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class MissingDependencyError(ProviderError):
    """The provider needs an optional package that is not installed (e.g. litellm in the thin client). The
    message names the ``pip install`` that fixes it; retrying will not help."""

    kind = "missing_dependency"


ERROR_CLASSES: dict[str, type[ProviderError]] = {
    cls.__name__: cls
    for cls in (
        ProviderError,
        ProviderUnavailableError,
        CredentialsError,
        ModelNotFoundError,
        RateLimitError,
        ProviderTimeoutError,
        InvalidRequestError,
        ContextWindowExceededError,
        UnsupportedAttachmentError,
        UnknownProviderError,
        MissingDependencyError,
    )
}


def error_from_dict(data: dict) -> ProviderError:
    """Rebuild an error from :meth:`ProviderError.to_dict` (the inverse used after a process boundary)."""
    cls = ERROR_CLASSES.get(str(data.get("type")), ProviderError)
    kwargs = {k: data[k] for k in ("provider", "model", "status_code", "attempts") if k in data}
    if cls is RateLimitError and "retry_after" in data:
        kwargs["retry_after"] = data["retry_after"]
    error = cls(str(data.get("message", "")), **kwargs)
    attempted = data.get("attempted")
    if isinstance(attempted, list):
        error.attempted = [
            {k: str(a.get(k, "")) for k in ("model", "kind", "message")} for a in attempted if isinstance(a, dict)
        ]
    return error


# --------------------------------------------------------------------------------------------- secret redaction
_SECRET_ENV_SUFFIXES = ("_API_KEY", "_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
# Well-known key shapes: OpenAI/Anthropic style sk-..., bearer tokens, and key=... query parameters.
_KEY_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=]{8,}"),
    re.compile(r"(?i)([?&](?:key|api_key|api-key|token)=)[^&\s\"']+"),
)
REDACTED = "[REDACTED]"


def _secret_values(extra: tuple[str | None, ...]) -> list[str]:
    values = [v for v in extra if v and len(v) >= 6]
    for name, value in os.environ.items():
        if value and len(value) >= 8 and name.upper().endswith(_SECRET_ENV_SUFFIXES):
            values.append(value)
    # Longest first, so a key that contains another is replaced whole.
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, *secrets: str | None) -> str:
    """Remove secrets from ``text``: the given values, every env var that looks like a key, and key-shaped
    substrings. Used on every upstream message before it reaches an exception, a log line or a reply."""
    for value in _secret_values(secrets):
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _KEY_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text
