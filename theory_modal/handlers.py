"""The one body every Modal function runs: payload -> provider -> response dict.

Modal functions in ``theory_modal.app`` are thin shells over :func:`run_chat` and :func:`run_stream`, so the
local adapter (``.local()``), ``modal run`` and remote calls all execute exactly this code.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from providers import LLMProvider, get_llm_provider, telemetry
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


def _call_args(payload: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
    req = Request.from_dict(payload)
    kwargs: dict[str, Any] = dict(req.options)
    if req.model is not None:
        kwargs["model"] = req.model
    if req.attachments:
        kwargs["attachments"] = req.decoded_attachments()
    if req.fallbacks is not None:
        kwargs["fallbacks"] = list(req.fallbacks)
    return req, kwargs


def run_chat(ref: str, provider: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate, call the provider, return the response dict. Errors propagate (Modal keeps their type).

    The provider's span continues the caller's trace (``trace`` in the request) and is labelled with the ref."""
    req, kwargs = _call_args(payload)
    with telemetry.remote_parent(req.trace), telemetry.call_context(ref=ref, mode=req.mode):
        reply = provider_for(provider, req.mode).chat(req.prompt, **kwargs)
    return response_dict(ref, reply.to_dict())


def run_stream(ref: str, provider: str, payload: dict[str, Any]) -> Iterator[str | dict[str, Any]]:
    """Yield ``str`` chunks, then ``{STREAM_END: response dict}`` with the final usage."""
    req, kwargs = _call_args(payload)
    # Only the opening runs under the caller's trace context: its span is created there and carries the parent
    # itself; a context attached across this generator's yields would leak into whoever iterates it.
    with telemetry.remote_parent(req.trace), telemetry.call_context(ref=ref, mode=req.mode):
        stream = provider_for(provider, req.mode).stream_chat(req.prompt, **kwargs)
    yield from stream
    yield {STREAM_END: response_dict(ref, stream.reply.to_dict())}
