"""Provider errors: a shallow hierarchy under RuntimeError, so the seed contract (``RuntimeError``) holds.

Every message says what went wrong and what to do about it, and never contains a secret: every message is
passed through :func:`providers.redact.redact` when the error is built and again by :meth:`ProviderError.to_dict`,
so a code path that forgets to redact upstream text still cannot leak a key the process knows.
"""

from __future__ import annotations

from providers.redact import REDACTED, redact

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
    "OutputValidationError",
    "redact",
    "REDACTED",
]


#: Every ProviderError subclass by class name, filled as classes are defined (see ``__init_subclass__``).
_SUBCLASSES: dict[str, type] = {}


class ProviderError(RuntimeError):
    """Base class. ``retryable`` says whether trying the same call again later can succeed."""

    retryable: bool = False
    #: Short stable name of the class, used when an error crosses a process boundary as data.
    kind: str = "provider_error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        # Every subclass, wherever it is defined (e.g. the deployment's ModelNotAllowedError), can be rebuilt
        # by name after a process boundary, so a caller keeps catching it as its real class and bases.
        super().__init_subclass__(**kwargs)
        _SUBCLASSES.setdefault(cls.__name__, cls)

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        attempts: int | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.attempts = attempts
        #: Set by a fallback chain: ``[{"model", "kind", "message"}, ...]``, every model tried, in order.
        self.attempted: list[dict[str, str]] | None = None

    def __str__(self) -> str:
        # Redacted again at output time: code that rewrites ``message``/``args`` later cannot bypass it.
        return redact(self.args[0] if self.args else self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def to_dict(self) -> dict:
        """JSON-safe form for batch output and for crossing the Modal boundary (redacted field by field)."""
        out = {"type": type(self).__name__, "kind": self.kind, "message": redact(self.message)}
        for key in ("provider", "model", "status_code", "attempts", "attempted"):
            value = getattr(self, key)
            if value is not None:
                out[key] = redact(value) if isinstance(value, str) else value
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
        return redact(self.message)


class MissingDependencyError(ProviderError):
    """The provider needs an optional package that is not installed (e.g. litellm in the thin client). The
    message names the ``pip install`` that fixes it; retrying will not help."""

    kind = "missing_dependency"


class OutputValidationError(ProviderError):
    """The model's reply (its JSON or a tool call's arguments) did not validate against the schema, after the
    re-asks ``output_retries`` allowed. ``raw_text`` is the last raw reply (redacted like every message);
    ``usage`` sums every attempt. Not retried: the same request would most likely fail the same way."""

    kind = "output_invalid"

    def __init__(self, message: str, *, raw_text: str = "", usage: dict | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = redact(raw_text)
        self.usage = usage

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["raw_text"] = redact(self.raw_text)
        if self.usage is not None:
            out["usage"] = dict(self.usage)
        return out


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
        OutputValidationError,
    )
}


def error_from_dict(data: dict) -> ProviderError:
    """Rebuild an error from :meth:`ProviderError.to_dict` (the inverse used after a process boundary)."""
    name = str(data.get("type"))
    cls = ERROR_CLASSES.get(name) or _SUBCLASSES.get(name, ProviderError)
    kwargs = {k: data[k] for k in ("provider", "model", "status_code", "attempts") if k in data}
    if cls is RateLimitError and "retry_after" in data:
        kwargs["retry_after"] = data["retry_after"]
    if cls is OutputValidationError:
        kwargs.update(raw_text=str(data.get("raw_text") or ""), usage=_usage_or_none(data.get("usage")))
    error = cls(str(data.get("message", "")), **kwargs)
    attempted = data.get("attempted")
    if isinstance(attempted, list):
        error.attempted = [
            {k: str(a.get(k, "")) for k in ("model", "kind", "message")} for a in attempted if isinstance(a, dict)
        ]
    return error


def _usage_or_none(usage: object) -> dict | None:
    """A usage that crossed a boundary, checked like a reply's; a malformed one (another service's) is unknown."""
    from providers.usage import validate_usage

    try:
        return dict(validate_usage(usage))
    except ValueError:
        return None
