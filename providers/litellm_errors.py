"""LiteLLM exception -> ProviderError: the one place where upstream failures get their meaning and message.

Measured behaviour this relies on (litellm 1.110.2, see shared/notes/litellm.md §4): ``Timeout`` subclasses
``APIConnectionError``; an ``openai/`` call to a refused port surfaces as ``InternalServerError("Connection
error.")``; Ollama 404 means "model not pulled"; 403 arrives as ``APIError`` for ``openai/``.
"""

from __future__ import annotations

import email.utils
import os
import time
from dataclasses import dataclass

from providers.errors import (
    ContextWindowExceededError,
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from providers.redact import clip, mask_url

__all__ = [
    "Target",
    "map_litellm_error",
    "vendor_name",
    "unreachable_message",
    "dropped_message",
    "base_url",
    "LOCAL_PROVIDERS",
]

#: LiteLLM provider prefixes that run models locally: their cost is 0, not unknown.
LOCAL_PROVIDERS = frozenset({"ollama", "ollama_chat", "lm_studio", "llamafile"})
OLLAMA_PROVIDERS = frozenset({"ollama", "ollama_chat"})

_VENDOR_NAMES = {
    "openai": "OpenAI",
    "text-completion-openai": "OpenAI",
    "azure": "Azure OpenAI",
    "anthropic": "Anthropic",
    "ollama": "Ollama",
    "ollama_chat": "Ollama",
    "gemini": "Gemini",
    "vertex_ai": "Vertex AI",
    "groq": "Groq",
    "mistral": "Mistral",
    "cohere": "Cohere",
    "cohere_chat": "Cohere",
    "deepseek": "DeepSeek",
    "openrouter": "OpenRouter",
    "together_ai": "Together AI",
    "bedrock": "AWS Bedrock",
    "xai": "xAI",
}


def vendor_name(llm_provider: str) -> str:
    return _VENDOR_NAMES.get(llm_provider, llm_provider.replace("_", " ").title() or "the provider")


def key_env_for(model: str, llm_provider: str) -> str | None:
    """The env var that holds the key for ``model`` (``OPENAI_API_KEY``), for messages. Asks LiteLLM which key is
    missing; when the key is set, guesses ``<PROVIDER>_API_KEY`` if that variable exists."""
    if llm_provider in LOCAL_PROVIDERS:
        return None
    try:
        import litellm

        missing = litellm.validate_environment(model=model).get("missing_keys") or []
    except Exception:  # noqa: BLE001
        missing = []
    keys = [k for k in missing if not k.endswith("_API_BASE")]
    if keys:
        return keys[-1] if len(keys) == 1 else f"{keys[-1]} (or {', '.join(keys[:-1])})"
    guess = f"{llm_provider.upper()}_API_KEY" if llm_provider else None
    return guess if guess and guess in os.environ else None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a call goes: enough to write a helpful message."""

    model: str  # as the caller gave it, e.g. "ollama_chat/qwen2.5:0.5b"
    llm_provider: str  # LiteLLM's provider prefix, e.g. "ollama_chat"
    bare_model: str  # model without the prefix, e.g. "qwen2.5:0.5b"
    api_base: str | None
    api_key: str | None  # only to redact it; never printed

    @property
    def key_env(self) -> str | None:
        """The env var holding the key. Computed only when a message needs it (off the hot path)."""
        return key_env_for(self.model, self.llm_provider)

    @property
    def shown_base(self) -> str | None:
        """``api_base`` safe to print: credentials in the URL (``http://user:pass@host``) are masked."""
        return mask_url(self.api_base)

    @property
    def vendor(self) -> str:
        return vendor_name(self.llm_provider)

    @property
    def is_ollama(self) -> bool:
        return self.llm_provider in OLLAMA_PROVIDERS


def base_url(t: Target) -> str | None:
    """Where the call went: ``api_base``, else the vendor's base-URL variable (``OPENAI_BASE_URL`` /
    ``OPENAI_API_BASE``), which LiteLLM reads itself, so live-mode containers configured from the environment
    still get a message naming the URL."""
    if t.api_base:
        return t.shown_base
    prefix = t.llm_provider.upper().replace("-", "_")
    for name in (f"{prefix}_BASE_URL", f"{prefix}_API_BASE") if prefix else ():
        if os.environ.get(name):
            return mask_url(os.environ[name])
    return None


def unreachable_message(t: Target) -> str:
    if t.is_ollama:
        return (
            "Ollama unreachable. Ensure ollama serve is running and model is pulled "
            f"(e.g., 'ollama pull {t.bare_model}'). Tried {t.shown_base}."
        )
    head = f"{t.key_env} missing or {t.vendor} unreachable." if t.key_env else f"{t.vendor} unreachable."
    where = base_url(t)
    return head + (f" Could not connect to {where}." if where else "")


def dropped_message(t: Target) -> str:
    """The server was reached, then closed the connection (reset, truncated body): not a key or address problem."""
    where = base_url(t)
    at = f" at {where}" if where else ""
    fix = "check that ollama serve is healthy, then try again." if t.is_ollama else "try again later."
    return f"{t.vendor}{at} closed the connection before its reply was complete (model {t.model}): {fix}"


def _retry_after(exc: BaseException) -> float | None:
    """The Retry-After hint in seconds, from the error's response headers (delta-seconds or an HTTP date)."""
    for headers in (
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    ):
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            continue
        if value is None:
            continue
        value = str(value).strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


def _detail(exc: BaseException, t: Target) -> str:
    """Upstream text without litellm's class-name prefixes and without secrets: the WHOLE text is redacted
    first, then cut to 500 characters (cutting first could leave the head of a key that straddles the cut)."""
    text = str(getattr(exc, "message", None) or exc)
    for prefix in ("litellm.", "litellm.BadRequestError: ", "BadRequestError: ", "APIError: "):
        while text.startswith(prefix):
            text = text[len(prefix) :]
    return clip(text.strip(), DETAIL_LIMIT, t.api_key)


# Transport exception names (httpx, httpcore, h11, aiohttp) that tell "never connected" from "connected, then cut".
#: Upstream text kept in a message, in characters (after redaction).
DETAIL_LIMIT = 500

_CONNECT_FAILURES = ("ConnectError", "ConnectTimeout", "ClientConnectorError")
_DROPPED = ("ReadError", "WriteError", "RemoteProtocolError", "ClientPayloadError", "ServerDisconnectedError")


def _connection_failure(exc: BaseException) -> str | None:
    """``"connect"`` (refused, no route), ``"dropped"`` (reset or truncated after connecting), or None.

    ``openai/`` connection failures arrive as InternalServerError('Connection error.'): walk the causes."""
    import litellm

    seen: set[int] = set()
    connection = dropped = False
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if name in _CONNECT_FAILURES or isinstance(cur, ConnectionRefusedError):
            return "connect"
        if name in _DROPPED or isinstance(cur, (ConnectionResetError, BrokenPipeError)):
            dropped = True
        if isinstance(cur, litellm.APIConnectionError) and not isinstance(cur, litellm.Timeout):
            connection = True
        elif isinstance(cur, (ConnectionError, OSError)) and not isinstance(cur, TimeoutError):
            connection = True
        elif name == "APIConnectionError" or "Connection error" in str(cur):
            connection = True
        cur = cur.__cause__ or cur.__context__
    if dropped:
        return "dropped"
    return "connect" if connection else None


def map_litellm_error(exc: BaseException, t: Target, *, timeout: float | None = None) -> ProviderError:
    """Translate one LiteLLM (or transport) exception into our hierarchy, with an actionable, secret-free message."""
    import litellm

    common = {"provider": "litellm", "model": t.model}
    status = getattr(exc, "status_code", None)
    status = int(status) if isinstance(status, int) or (isinstance(status, str) and status.isdigit()) else None
    if isinstance(exc, ProviderError):
        return exc

    if isinstance(exc, litellm.Timeout) or isinstance(exc, TimeoutError):
        after = f" after {timeout:g}s" if timeout else ""
        return ProviderTimeoutError(
            f"{t.vendor} did not answer{after} (model {t.model}). Raise timeout= or check the server at "
            f"{base_url(t) or 'its default URL'}.",
            status_code=408, **common,
        )
    if isinstance(exc, litellm.RateLimitError) or status == 429:
        ra = _retry_after(exc)
        hint = f"; the provider asks to retry after {ra:g}s" if ra is not None else ""
        return RateLimitError(
            f"{t.vendor} rate limit hit for {t.model}{hint}. Slow down, or raise your quota.",
            retry_after=ra, status_code=429, **common,
        )
    if isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError)) or status in (401, 403):
        who = t.key_env or "the API key"
        code = status or 401
        return CredentialsError(
            f"{who} was rejected by {t.vendor} (HTTP {code}): check the key and that it may use {t.model}.",
            status_code=code, **common,
        )
    if isinstance(exc, litellm.NotFoundError) or status == 404:
        if t.is_ollama:
            msg = (
                f"Ollama model '{t.bare_model}' not found at {t.shown_base}: pull it with "
                f"'ollama pull {t.bare_model}' (or check the model name)."
            )
        else:
            msg = (
                f"{t.vendor} has no model '{t.bare_model}' (HTTP 404) or this key cannot use it: check the model "
                f"name, e.g. 'openai/gpt-4o-mini'. Detail: {_detail(exc, t)}"
            )
        return ModelNotFoundError(msg, status_code=404, **common)
    if isinstance(exc, litellm.ContextWindowExceededError):
        return ContextWindowExceededError(
            f"The prompt is longer than {t.model}'s context window: shorten it or pick a model with a larger "
            f"window. Detail: {_detail(exc, t)}",
            status_code=400, **common,
        )
    if isinstance(exc, (litellm.BadRequestError, litellm.UnprocessableEntityError)) or status in (400, 413, 422):
        return InvalidRequestError(
            f"{t.vendor} rejected the request for {t.model} (HTTP {status or 400}): {_detail(exc, t)}",
            status_code=status or 400, **common,
        )
    failure = _connection_failure(exc)
    if failure == "dropped":
        return ProviderUnavailableError(dropped_message(t), **common)
    if failure:
        return ProviderUnavailableError(unreachable_message(t), **common)
    if isinstance(exc, (litellm.InternalServerError, litellm.BadGatewayError, litellm.ServiceUnavailableError)) or (
        status is not None and (status >= 500 or status in (408, 409))
    ):
        code = status or 500
        err = ProviderUnavailableError(
            f"{t.vendor} failed on its side (HTTP {code}) for {t.model}: {_detail(exc, t)}. Try again later.",
            status_code=code, **common,
        )
        ra = _retry_after(exc)
        if ra is not None:  # 503 with Retry-After: the wait is honoured like a rate limit's
            err.retry_after = ra  # type: ignore[attr-defined]
        return err
    err = ProviderError(f"{t.vendor} call for {t.model} failed: {type(exc).__name__}: {_detail(exc, t)}", status_code=status, **common)
    return err
