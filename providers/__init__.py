"""LLM providers behind one small contract.

>>> from providers import get_llm_provider
>>> llm = get_llm_provider("mock")
>>> reply = llm.chat("Hello")
>>> reply.text, reply.provider, reply.model, reply.usage

Importing this package imports neither litellm (~3 s) nor modal: the LiteLLM provider loads litellm on first use.
The names below are resolved on first access (PEP 562), so ``import providers`` loads only the registry: a mock
chat never pays for what it does not use (asyncio for the retry loop, the attachment reader's hashing and MIME
tables, ...). ``from providers import X`` works as usual.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time ``__getattr__`` below loads these
    from providers.attachments import DEFAULT_MAX_BYTES, Attachment
    from providers.contract import LLMProvider, LLMReply
    from providers.errors import (
        ContextWindowExceededError,
        CredentialsError,
        InvalidRequestError,
        MissingDependencyError,
        ModelNotFoundError,
        ProviderError,
        ProviderTimeoutError,
        ProviderUnavailableError,
        RateLimitError,
        UnknownProviderError,
        UnsupportedAttachmentError,
    )
    from providers.registry import available_providers, default_models, get_llm_provider, register_provider
    from providers.retry import RetryPolicy
    from providers.streams import AsyncChatStream, ChatStream
    from providers.usage import USAGE_KEYS, to_micro_usd

#: public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "get_llm_provider": "providers.registry",
    "register_provider": "providers.registry",
    "available_providers": "providers.registry",
    "default_models": "providers.registry",
    "LLMReply": "providers.contract",
    "LLMProvider": "providers.contract",
    "ChatStream": "providers.streams",
    "AsyncChatStream": "providers.streams",
    "Attachment": "providers.attachments",
    "DEFAULT_MAX_BYTES": "providers.attachments",
    "RetryPolicy": "providers.retry",
    "USAGE_KEYS": "providers.usage",
    "to_micro_usd": "providers.usage",
    **dict.fromkeys(
        (
            "ProviderError", "ProviderUnavailableError", "CredentialsError", "ModelNotFoundError", "RateLimitError",
            "ProviderTimeoutError", "InvalidRequestError", "ContextWindowExceededError",
            "UnsupportedAttachmentError", "UnknownProviderError", "MissingDependencyError",
        ),
        "providers.errors",
    ),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load a public name's module on first access and cache the name here (later lookups skip this hook)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'providers' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
