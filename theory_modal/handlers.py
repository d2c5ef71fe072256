"""The one body every Modal function runs: payload -> provider -> response dict.

Modal functions in ``theory_modal.app`` are thin shells over :func:`run_chat` and :func:`run_stream`, so the
local adapter (``.local()``), ``modal run`` and remote calls all execute exactly this code.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from providers import LLMProvider, get_llm_provider
from providers.registry import default_models
from theory_modal.allowlist import check_allowed
from theory_modal.wire import STREAM_END, Request, response_dict

__all__ = ["run_chat", "run_stream", "provider_for"]

_providers: dict[tuple[str, str], LLMProvider] = {}
_lock = threading.Lock()


def provider_for(provider: str, mode: str) -> LLMProvider:
    """One provider instance per (provider, mode) per process: containers reuse it across inputs."""
    key = (provider, mode)
    cached = _providers.get(key)
    if cached is not None:
        return cached
    with _lock:
        if key not in _providers:
            config: dict[str, Any] = {"smoke": True} if provider == "litellm" and mode == "smoke" else {}
            _providers[key] = get_llm_provider(provider, **config)
        return _providers[key]


def _call_args(provider: str, payload: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
    """Validate the payload (model grammar of this provider) and enforce the deployment's allow-list on the
    model the call will really use (the provider's default when the payload names none)."""
    req = Request.from_dict(payload, provider=provider)
    check_allowed(req.model or getattr(provider_for(provider, req.mode), "model_default", None)
                  or default_models.get(provider, ""))
    kwargs: dict[str, Any] = dict(req.options)
    if req.model is not None:
        kwargs["model"] = req.model
    if req.attachments:
        kwargs["attachments"] = req.decoded_attachments()
    return req, kwargs


def run_chat(ref: str, provider: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate, call the provider, return the response dict. Errors propagate (Modal keeps their type)."""
    req, kwargs = _call_args(provider, payload)
    reply = provider_for(provider, req.mode).chat(req.prompt, **kwargs)
    return response_dict(ref, reply.to_dict())


def run_stream(ref: str, provider: str, payload: dict[str, Any]) -> Iterator[str | dict[str, Any]]:
    """Yield ``str`` chunks, then ``{STREAM_END: response dict}`` with the final usage."""
    req, kwargs = _call_args(provider, payload)
    stream = provider_for(provider, req.mode).stream_chat(req.prompt, **kwargs)
    yield from stream
    yield {STREAM_END: response_dict(ref, stream.reply.to_dict())}
