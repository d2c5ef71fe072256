"""Provider registry: name -> factory. A new provider is one module plus one ``register_provider`` call.

Factories are imported lazily, so registering (and ``import providers``) costs nothing: the LiteLLM module, and
litellm itself, load only when a ``litellm`` provider is first built or used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from providers.contract import LLMProvider
from providers.errors import MissingDependencyError, UnknownProviderError

__all__ = ["default_models", "register_provider", "get_llm_provider", "available_providers", "require_litellm"]

#: What a user without litellm is told: the thin client (`pip install theory-modal`) leaves LiteLLM out.
LITELLM_MISSING = (
    "the litellm provider needs LiteLLM, which is not installed: pip install 'theory-modal[litellm]' "
    "(the mock provider and calls to the deployed app work without it)"
)


def require_litellm() -> None:
    """Raise :class:`MissingDependencyError` naming the extra when litellm is not importable (no import done)."""
    import importlib.util

    if importlib.util.find_spec("litellm") is None:
        raise MissingDependencyError(LITELLM_MISSING, provider="litellm")

ProviderFactory = Callable[..., LLMProvider]

#: The model each provider uses when neither the caller nor the config names one.
default_models: dict[str, str] = {
    "mock": "mock",
    "litellm": "openai/gpt-4o-mini",  # cost-effective default
}

_factories: dict[str, ProviderFactory] = {}
_lock = threading.Lock()


def register_provider(name: str, factory: ProviderFactory, *, default_model: str | None = None, replace: bool = False) -> None:
    """Register ``factory(**config) -> LLMProvider`` under ``name``. Refuses to silently replace a provider."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"provider name must be an identifier-like string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable")
    with _lock:
        if name in _factories and not replace:
            raise ValueError(f"provider {name!r} is already registered; pass replace=True to override it")
        _factories[name] = factory
        if default_model is not None:
            default_models[name] = default_model


def available_providers() -> list[str]:
    return sorted(_factories)


def get_llm_provider(name: str, **config: Any) -> LLMProvider:
    """Build a provider: ``get_llm_provider("litellm", model_default="openai/gpt-4o-mini", api_base=..., ...)``."""
    factory = _factories.get(name)
    if factory is None:
        known = ", ".join(available_providers())
        raise UnknownProviderError(f"unknown provider {name!r}; known providers: {known}")
    config.setdefault("model_default", default_models.get(name))
    if config["model_default"] is None:
        del config["model_default"]
    return factory(**config)


def _mock_factory(**config: Any) -> LLMProvider:
    from providers.mock import MockProvider

    return MockProvider(**config)


def _litellm_factory(**config: Any) -> LLMProvider:
    require_litellm()
    from providers.litellm_provider import LiteLLMProvider

    return LiteLLMProvider(**config)


register_provider("mock", _mock_factory)
register_provider("litellm", _litellm_factory)
