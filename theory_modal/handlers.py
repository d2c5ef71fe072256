"""The bodies every Modal function runs (async): payload -> provider -> wire response or stream events.

Modal functions in ``theory_modal.app`` are thin shells over :func:`chat` and :func:`stream`, so the local
adapter (``.local()``), ``modal run`` and remote calls all execute exactly this code. They are ``async`` so a
container serving many inputs cancels one input as one asyncio task, never by signalling the whole container.

Provider errors leave as :func:`theory_modal.wire.remote_error` (a builtin ``RuntimeError`` carrying the wire
error object), so a caller with only ``modal`` installed can read them; the adapters rebuild the typed error.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

from providers import LLMProvider, get_llm_provider, telemetry, telemetry_export
from providers.errors import ProviderError
from providers.registry import default_models
from theory_modal.allowlist import check_allowed
from theory_modal.wire import Request, delta_event, done_event, remote_error, response_dict, start_event

__all__ = ["chat", "stream", "provider_for"]

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
    for fallback in req.fallbacks or ():  # a fallback is a model the call may use: the same allow-list holds
        check_allowed(fallback)
    kwargs: dict[str, Any] = dict(req.options)
    if req.model is not None:
        kwargs["model"] = req.model
    if req.attachments:
        kwargs["attachments"] = req.decoded_attachments()
    kwargs.update(req.chat_kwargs())
    if req.fallbacks is not None:
        kwargs["fallbacks"] = list(req.fallbacks)
    return req, kwargs


def _function_call_id() -> str | None:
    """The Modal function call this input belongs to (None in-process): lets a caller cancel a stream."""
    try:
        import modal

        return modal.current_function_call_id()
    except Exception:  # noqa: BLE001 - not inside a Modal input
        return None


def _container_telemetry() -> None:
    """Inside a Modal container: OTLP export from the standard variables, set up at the first input (after any
    memory snapshot: the exporter's threads must not be in it). Elsewhere the caller's process owns its setup."""
    import modal

    if not modal.is_local():
        telemetry_export.setup_from_env()


async def chat(ref: str, provider: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate, call the provider, return the Response.

    The provider's span continues the caller's trace (``trace`` in the request) and is labelled with the ref;
    in a container it is exported before the reply leaves (bounded: :func:`telemetry_export.after_call`)."""
    _container_telemetry()
    try:
        req, kwargs = _call_args(provider, payload)
        with telemetry.remote_parent(req.trace), telemetry.call_context(ref=ref, mode=req.mode):
            reply = await provider_for(provider, req.mode).achat(req.prompt, **kwargs)
    except ProviderError as exc:
        raise remote_error(exc) from None
    finally:
        await telemetry_export.after_call()
    return response_dict(ref, req.mode, reply.to_dict())


async def stream(ref: str, provider: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Yield a ``start`` event, ``delta`` events, then one ``done`` event with the Response.

    Closing or cancelling this generator closes the provider's stream (and with it the upstream connection).
    Only the opening runs under the caller's trace context: its span is created there and carries the parent
    itself; a context attached across this generator's yields would leak into whoever iterates it.
    """
    _container_telemetry()
    try:
        req, kwargs = _call_args(provider, payload)
        with telemetry.remote_parent(req.trace), telemetry.call_context(ref=ref, mode=req.mode):
            chunks = provider_for(provider, req.mode).astream_chat(req.prompt, **kwargs)
    except ProviderError as exc:
        await telemetry_export.after_call()
        raise remote_error(exc) from None
    try:
        yield start_event(_function_call_id())
        try:
            async for chunk in chunks:
                yield delta_event(chunk)
        except ProviderError as exc:
            raise remote_error(exc) from None
    finally:
        await chunks.aclose()
        await telemetry_export.after_call()  # the stream's span has ended: exported before `done` is sent
    yield done_event(response_dict(ref, req.mode, chunks.reply.to_dict()))
