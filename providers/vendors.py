"""Which environment variable holds each cloud vendor's key, known without importing litellm.

The CLI and ``doctor`` use this to refuse a live call whose key is not set at once, before the multi-second
litellm import. Only vendors whose key is one variable (or one of a few alternatives) are listed; for the others
(Azure, Vertex AI, Bedrock: several settings) the LiteLLM provider itself decides. A test compares this table
with ``litellm.validate_environment`` so the two cannot drift apart silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["DEFAULT_OLLAMA_BASE", "VENDOR_KEYS", "VENDOR_NAMES", "key_vars", "missing_key_message", "ollama_base",
           "vendor_of"]

DEFAULT_OLLAMA_BASE = "http://localhost:11434"

#: LiteLLM provider prefix -> the variables that can hold its key (any one of them is enough).
VENDOR_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "codestral": ("CODESTRAL_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY",),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "nvidia_nim": ("NVIDIA_NIM_API_KEY",),
    "dashscope": ("DASHSCOPE_API_KEY",),
    "moonshot": ("MOONSHOT_API_KEY",),
    "novita": ("NOVITA_API_KEY",),
    "nebius": ("NEBIUS_API_KEY",),
    "featherless_ai": ("FEATHERLESS_AI_API_KEY",),
}

#: Display names for messages (the same wording the LiteLLM provider uses).
VENDOR_NAMES: dict[str, str] = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "gemini": "Gemini",
    "groq": "Groq",
    "mistral": "Mistral",
    "cohere": "Cohere",
    "deepseek": "DeepSeek",
    "openrouter": "OpenRouter",
    "together_ai": "Together AI",
    "xai": "xAI",
}


def vendor_of(model: str) -> str:
    """``'openai/gpt-4o-mini'`` -> ``'openai'``; a model without a prefix has no known vendor (``''``)."""
    prefix, sep, _ = model.partition("/")
    return prefix if sep else ""


def key_vars() -> tuple[str, ...]:
    """Every key variable in the table, in table order, without repeats (what ``doctor`` reports)."""
    return tuple(dict.fromkeys(name for names in VENDOR_KEYS.values() for name in names))


def missing_key_message(model: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The provider's own message for a known vendor whose key is unset (e.g. ``OPENAI_API_KEY missing or
    OpenAI unreachable.``), or ``None`` when the key is set or the vendor is not in the table."""
    env = os.environ if environ is None else environ
    vendor = vendor_of(model)
    names = VENDOR_KEYS.get(vendor)
    if not names or any(env.get(name) for name in names):
        return None
    shown = VENDOR_NAMES.get(vendor, vendor.replace("_", " ").title())
    var = names[0] if len(names) == 1 else f"{names[0]} (or {', '.join(names[1:])})"
    return f"{var} missing or {shown} unreachable."


def ollama_base(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The Ollama base URL in effect and where it came from. ``LLM_API_BASE`` (this project's setting) wins over
    ``OLLAMA_API_BASE`` (LiteLLM's own, honoured so an existing Ollama setup works as is), then the default
    ``http://localhost:11434``. Blank values count as unset."""
    env = os.environ if environ is None else environ
    for name in ("LLM_API_BASE", "OLLAMA_API_BASE"):
        value = (env.get(name) or "").strip()
        if value:
            return value, name
    return DEFAULT_OLLAMA_BASE, "default"
