"""LLM providers behind one small contract.

>>> from providers import get_llm_provider
>>> llm = get_llm_provider("mock")
>>> reply = llm.chat("Hello")
>>> reply.text, reply.provider, reply.model, reply.usage

Importing this package imports neither litellm (~3 s) nor modal: the LiteLLM provider loads litellm on first use.
"""

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

__all__ = [
    "get_llm_provider",
    "register_provider",
    "available_providers",
    "default_models",
    "LLMReply",
    "LLMProvider",
    "ChatStream",
    "AsyncChatStream",
    "Attachment",
    "DEFAULT_MAX_BYTES",
    "RetryPolicy",
    "USAGE_KEYS",
    "to_micro_usd",
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
]
