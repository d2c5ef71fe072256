"""The fast path: OpenAI-protocol requests sent with the openai SDK, LiteLLM kept for everything else.

Why it exists: for an ``openai/`` model LiteLLM ends up sending exactly the request the openai SDK sends, but
spends 2-3x the SDK's CPU per streamed chunk (a second, LiteLLM-shaped model per chunk, reprs for debug lines
that are never printed, a logging task per chunk) and ~3x per call (parameter mapping, logging objects, cost).
Profiles and figures: ``bench/README.md``.

What stays LiteLLM's job, so callers see the same replies and the same errors on both paths:

- routing: only targets whose LiteLLM chat config is the plain OpenAI one (``OpenAIGPTConfig`` or
  ``OpenAIUnknownModelConfig``: gpt-4o-class models and names a gateway serves), with options that config
  passes through unchanged, qualify; reasoning models (parameter rewriting), other providers, smoke mode
  (``mock_response``) and processes with LiteLLM callbacks or request-changing globals stay on LiteLLM;
- the request and the client: LiteLLM's own helpers build the body and options, and the client comes from
  LiteLLM's client cache, so the bytes on the wire and the connection pools are LiteLLM's;
- prices: the provider prices both paths with ``litellm.cost_per_token``;
- errors: SDK exceptions are wrapped the way LiteLLM's OpenAI handler wraps them and passed through
  ``litellm.exception_type``; stream failures follow LiteLLM's stream wrapper rules.

The objects returned are the SDK's ``ChatCompletion`` / ``ChatCompletionChunk``, which have the attributes the
provider reads from LiteLLM's (``choices[0].message``, ``choices[0].delta``, ``usage``). Some LiteLLM helpers
used here are private: litellm is pinned, and ``tests/differential`` proves both paths identical.

Switches: ``LiteLLMProvider(fast_path=False)`` per provider, ``THEORY_MODAL_FAST_PATH=0`` per process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

__all__ = ["FastBackend", "ENV_SWITCH", "enabled_by_env", "backend_for"]

#: ``THEORY_MODAL_FAST_PATH=0`` (or ``false``/``no``/``off``) sends every call through ``litellm.completion``.
ENV_SWITCH = "THEORY_MODAL_FAST_PATH"

#: kwargs the provider passes that are not part of the request body.
_TRANSPORT_KEYS = frozenset({"model", "messages", "timeout", "max_retries", "api_base", "api_key", "stream"})
#: LiteLLM module globals that, when set, change what LiteLLM sends or observes: their presence keeps a call on
#: LiteLLM (callbacks would not fire on the fast path; headers / bases would not be applied).
_CALLBACK_LISTS = ("callbacks", "success_callback", "failure_callback", "input_callback",
                   "_async_success_callback", "_async_failure_callback", "service_callback")
_GLOBALS_UNSET = ("api_base", "headers", "api_key", "openai_key", "organization")
_ENV_UNSET = ("OPENAI_ORGANIZATION", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID")


def enabled_by_env() -> bool:
    """False when ``THEORY_MODAL_FAST_PATH`` says off. Read per call: flipping it needs no restart."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


class _Plan:
    """What LiteLLM decided about one model, computed once: whether its chat config passes options through."""

    __slots__ = ("plain", "supported")

    def __init__(self, plain: bool, supported: frozenset[str]) -> None:
        self.plain = plain
        self.supported = supported


_plans: dict[str, _Plan] = {}
_plans_lock = threading.Lock()


def _plan(litellm: Any, bare_model: str) -> _Plan:
    plan = _plans.get(bare_model)
    if plan is not None:
        return plan
    from litellm.llms.openai.chat.gpt_transformation import OpenAIGPTConfig, OpenAIUnknownModelConfig
    from litellm.types.utils import LlmProviders
    from litellm.utils import ProviderConfigManager

    try:
        cfg = ProviderConfigManager.get_provider_chat_config(model=bare_model, provider=LlmProviders.OPENAI)
        plain = type(cfg) in (OpenAIGPTConfig, OpenAIUnknownModelConfig)
        supported = frozenset(cfg.get_supported_openai_params(bare_model)) if plain else frozenset()
    except Exception:  # noqa: BLE001 - anything LiteLLM cannot classify stays on LiteLLM
        plain, supported = False, frozenset()
    plan = _Plan(plain, supported)
    with _plans_lock:
        if len(_plans) > 1024:
            _plans.clear()
        _plans[bare_model] = plan
    return plan


def _litellm_untouched(litellm: Any) -> bool:
    """No callbacks, headers, bases or keys set on the litellm module, and no org/project variables (the SDK
    and LiteLLM read different ones): the fast path would send or observe something else otherwise."""
    if any(getattr(litellm, name, None) for name in _CALLBACK_LISTS):
        return False
    if any(getattr(litellm, name, None) for name in _GLOBALS_UNSET):
        return False
    if litellm.drop_params or litellm.modify_params or getattr(litellm, "OpenAIConfig").get_config():
        return False
    return not any(os.environ.get(name) for name in _ENV_UNSET)


def backend_for(litellm: Any, llm_provider: str, bare_model: str, kwargs: dict[str, Any]) -> FastBackend | None:
    """The fast backend for this call, or None when it must go through ``litellm.completion``."""
    if llm_provider != "openai" or "mock_response" in kwargs or not enabled_by_env():
        return None
    plan = _plan(litellm, bare_model)
    if not plan.plain:
        return None
    body_keys = kwargs.keys() - _TRANSPORT_KEYS
    if not body_keys <= plan.supported:
        return None
    if not _litellm_untouched(litellm):
        return None
    return _BACKEND


# ------------------------------------------------------------------------------------------ clients
def _client(is_async: bool, base: str, key: str, timeout: Any) -> Any:
    """The very client LiteLLM's OpenAI route would use: from LiteLLM's own client cache (one per base, key,
    timeout and, for async clients, event loop), so both paths share connection pools and LiteLLM's
    ``close_litellm_async_clients()`` releases ours too. ``max_retries=0``: the provider's loop retries."""
    from litellm.main import openai_chat_completions

    return openai_chat_completions._get_openai_client(
        is_async=is_async, api_key=key, api_base=base, timeout=timeout, max_retries=0, organization=None,
        client=None,
    )


def _resolve(litellm: Any, kwargs: dict[str, Any]) -> tuple[str, str]:
    """Base URL and key exactly as LiteLLM's OpenAI route resolves them (argument, then environment)."""
    base = (
        kwargs.get("api_base")
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
        or "https://api.openai.com/v1"
    )
    key = kwargs.get("api_key") or os.environ.get("OPENAI_API_KEY")
    if not key:
        # LiteLLM lets the SDK refuse a missing key; raise the same way so the mapping is the same.
        raise _as_litellm(litellm, _missing_key_error(), kwargs)
    return base, key


def _missing_key_error() -> Exception:
    import openai

    try:
        openai.OpenAI(api_key=None, base_url="http://127.0.0.1", max_retries=0)
    except openai.OpenAIError as exc:
        return exc
    return RuntimeError("api_key missing")  # pragma: no cover - the SDK always refuses a missing key


def _body(kwargs: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in kwargs.items() if k not in _TRANSPORT_KEYS}
    body["model"] = kwargs["model"].partition("/")[2] if "/" in kwargs["model"] else kwargs["model"]
    body["messages"] = kwargs["messages"]
    if kwargs.get("stream"):
        body["stream"] = True  # LiteLLM leaves "stream" out of non-streamed requests, and so do we
    return body


# ------------------------------------------------------------------------------------------ sending
class _Sdk:
    """LiteLLM's own OpenAI request helpers and the SDK types, imported once (after litellm is loaded)."""

    def __init__(self) -> None:
        import openai
        from litellm.llms.openai import openai as lo
        from litellm.llms.openai.common_utils import (
            OpenAIError,
            build_output_token_limit_response,
            is_output_token_limit_error,
            upstream_error_response,
        )
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        self.openai = openai
        self.lo = lo
        self.OpenAIError = OpenAIError
        self.build_limit = build_output_token_limit_response
        self.is_limit = is_output_token_limit_error
        self.upstream_error_response = upstream_error_response
        self.ChatCompletion = ChatCompletion
        self.Stream = openai.Stream[ChatCompletionChunk]
        self.AsyncStream = openai.AsyncStream[ChatCompletionChunk]


_sdk: _Sdk | None = None


def _get_sdk() -> _Sdk:
    global _sdk
    if _sdk is None:
        _sdk = _Sdk()
    return _sdk


def _send(sdk: _Sdk, client: Any, data: dict[str, Any], timeout: Any) -> Any:
    """The request exactly as LiteLLM's ``make_sync_openai_chat_completion_request`` sends it: the body posted
    without the SDK's TypedDict transform, the raw response parsed, an output-token-limit 400 turned into the
    truncated reply LiteLLM synthesises."""
    raw = None
    try:
        body, options = sdk.lo._request_without_sdk_transform(data, timeout)
        raw = sdk.lo._raw_chat_response(client.post(
            "/chat/completions", body=body, cast_to=sdk.ChatCompletion, options=options,
            stream=bool(data.get("stream")), stream_cls=sdk.Stream,
        ))
        response = raw.parse()
        _check_parsed(sdk, data, response)
        return response
    except sdk.OpenAIError:
        raise
    except sdk.openai.BadRequestError as e:
        if not sdk.is_limit(e):
            raise
        return sdk.build_limit(e=e, data=data, is_async=False, base_model=None)[1]
    except Exception as e:
        if raw is not None:
            raise Exception(  # noqa: TRY002 - LiteLLM's text, kept so messages match on both paths
                f"error - {e}, Received response - {raw}, Type of response - {type(raw)}"
            ) from e
        raise


async def _asend(sdk: _Sdk, client: Any, data: dict[str, Any], timeout: Any) -> Any:
    """Async twin of :func:`_send`, as LiteLLM's ``make_openai_chat_completion_request``."""
    import time

    start = time.time()
    try:
        body, options = sdk.lo._request_without_sdk_transform(data, timeout)
        raw = sdk.lo._raw_chat_response(await client.post(
            "/chat/completions", body=body, cast_to=sdk.ChatCompletion, options=options,
            stream=bool(data.get("stream")), stream_cls=sdk.AsyncStream,
        ))
        response = raw.parse()
        _check_parsed(sdk, data, response)
        return response
    except sdk.openai.APITimeoutError as e:
        e.message += f" - timeout value={timeout}, time taken={round(time.time() - start, 2)} seconds"
        raise
    except sdk.openai.BadRequestError as e:
        if not sdk.is_limit(e):
            raise
        return sdk.build_limit(e=e, data=data, is_async=True, base_model=None)[1]


def _check_parsed(sdk: _Sdk, data: dict[str, Any], response: Any) -> None:
    if not data.get("stream") and not hasattr(response, "model_dump"):
        raise sdk.OpenAIError(
            status_code=500,
            message=f"Empty or invalid response from LLM endpoint. Received: {response!r}. Check the reverse "
            "proxy or model server configuration.",
        )
    if not data.get("stream") and (problem := _bad_shape(response)):
        # LiteLLM's response conversion refuses these shapes as a 500 (retried); the SDK builds its objects
        # without validation, so without this a missing message raised AttributeError and a list content
        # came back as the reply's "text".
        raise sdk.OpenAIError(status_code=500, message=f"Invalid response object: {problem}")


def _bad_shape(response: Any) -> str | None:
    """Why a parsed non-streaming reply is not a chat completion LiteLLM would accept, or None."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        return f"'choices' is not a list ({type(choices).__name__})"
    for c in choices:
        message = getattr(c, "message", None)
        if message is None:
            return "a choice has no 'message'"
        if not isinstance(getattr(message, "content", None), (str, type(None))):
            return f"a message's content is {type(message.content).__name__}, not text"
    return None


# ------------------------------------------------------------------------------------------ errors
def _wrap_request_error(sdk: _Sdk, exc: BaseException, how: str) -> BaseException:
    """The ``OpenAIError`` LiteLLM's OpenAI handler makes of an SDK failure while sending; ``how`` names the
    handler (sync calls and streams, async calls, async streams each build it slightly differently)."""
    if isinstance(exc, sdk.OpenAIError):
        return exc
    headers = getattr(exc, "headers", None)
    response = getattr(exc, "response", None)
    if headers is None and response:
        headers = getattr(response, "headers", None)
    body = getattr(exc, "body", None)
    if how == "astream":
        if type(exc).__name__ == "ReadTimeout":
            return sdk.OpenAIError(status_code=408, message="ReadTimeout", headers=headers, body=body)
        if hasattr(exc, "status_code"):
            return sdk.OpenAIError(status_code=exc.status_code, message=str(exc),  # type: ignore[attr-defined]
                                   response=sdk.upstream_error_response(exc), headers=headers, body=body)
        return sdk.OpenAIError(status_code=500, message=f"{exc}", headers=headers, body=body)
    message = getattr(exc, "message", str(exc)) if how == "acall" else getattr(exc, "text", str(exc))
    return sdk.OpenAIError(
        status_code=getattr(exc, "status_code", 500), message=message,
        response=sdk.upstream_error_response(exc), headers=headers, body=body,
    )


def _as_litellm(litellm: Any, exc: BaseException, kwargs: dict[str, Any]) -> BaseException:
    """LiteLLM's own exception mapping, called the way ``litellm.completion`` calls it."""
    bare = kwargs["model"].partition("/")[2] or kwargs["model"]
    try:
        return litellm.exception_type(
            model=bare, custom_llm_provider="openai", original_exception=exc,
            completion_kwargs={}, extra_kwargs={"api_base": kwargs.get("api_base")},
        )
    except Exception as mapped:  # noqa: BLE001 - exception_type raises the mapped exception
        return mapped


def _request_failed(litellm: Any, exc: BaseException, kwargs: dict[str, Any], how: str) -> BaseException:
    try:
        raise _wrap_request_error(_get_sdk(), exc, how) from exc
    except Exception as wrapped:  # noqa: BLE001 - raised once so its context chain is LiteLLM's shape
        return _as_litellm(litellm, wrapped, kwargs)


def _stream_failed(litellm: Any, exc: BaseException, kwargs: dict[str, Any], delivered: str,
                   sent_first: bool) -> BaseException:
    """What LiteLLM's stream wrapper raises for a failure mid-stream: the mapped error for a non-retriable 4xx,
    else ``MidStreamFallbackError`` around it."""
    from litellm.exceptions import MidStreamFallbackError
    from litellm.litellm_core_utils import streaming_handler as sh

    mapped = _as_litellm(litellm, exc, kwargs)

    def status(e: BaseException) -> int | None:
        for code in (getattr(e, "status_code", None), getattr(getattr(e, "response", None), "status_code", None)):
            try:
                if code is not None:
                    return int(code)
            except (TypeError, ValueError):
                pass
        return None

    if not sh._is_transport_timeout(exc) and (
        sh._skips_stream_fallback(status(mapped)) or sh._skips_stream_fallback(status(exc))
    ):
        return mapped
    try:
        raise mapped
    except Exception:  # noqa: BLE001 - the fallback error's context is the mapped one, as in LiteLLM
        try:
            raise MidStreamFallbackError(
                message=str(mapped), model=kwargs["model"].partition("/")[2] or kwargs["model"],
                llm_provider="openai", original_exception=mapped, generated_content=delivered,
                is_pre_first_chunk=not sent_first, emitted_disqualifying_content=False,
            )
        except Exception as fallback:  # noqa: BLE001
            return fallback


def _eof_error() -> Exception:
    """A stream that ends without a finish_reason is an error in LiteLLM too (a silently truncated reply)."""
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    return CustomStreamWrapper._stream_eof_error()


# ------------------------------------------------------------------------------------------ streams
class _Tracker:
    __slots__ = ("finished", "delivered", "sent_first")

    def __init__(self) -> None:
        self.finished = False
        self.delivered: list[str] = []
        self.sent_first = False

    def see(self, chunk: Any) -> None:
        choices = chunk.choices
        if choices:
            c = choices[0]
            if c.finish_reason:
                self.finished = True
            text = c.delta.content
            if text:
                self.delivered.append(text)
            self.sent_first = True


class FastStream:
    """Iterates the SDK's chunks; failures come out as LiteLLM's stream wrapper raises them."""

    __slots__ = ("_sdk", "_it", "_litellm", "_kwargs", "_t")

    def __init__(self, litellm: Any, sdk_stream: Any, kwargs: dict[str, Any]) -> None:
        self._sdk = sdk_stream
        self._it = iter(sdk_stream)
        self._litellm = litellm
        self._kwargs = kwargs
        self._t = _Tracker()

    def __iter__(self) -> FastStream:
        return self

    def __next__(self) -> Any:
        try:
            chunk = next(self._it)
        except StopIteration:
            if not self._t.finished:
                err = _stream_failed(self._litellm, _eof_error(), self._kwargs, "".join(self._t.delivered),
                                     self._t.sent_first)
                self.close()
                raise err from None
            raise
        except Exception as exc:  # noqa: BLE001 - mapped like LiteLLM's stream wrapper maps it
            err = _stream_failed(self._litellm, exc, self._kwargs, "".join(self._t.delivered), self._t.sent_first)
            self.close()
            raise err from None
        self._t.see(chunk)
        return chunk

    def close(self) -> None:
        """Release the connection (also when the caller stops early)."""
        self._sdk.close()


class AsyncFastStream:
    """Async twin of :class:`FastStream`."""

    __slots__ = ("_sdk", "_it", "_litellm", "_kwargs", "_t")

    def __init__(self, litellm: Any, sdk_stream: Any, kwargs: dict[str, Any]) -> None:
        self._sdk = sdk_stream
        self._it = sdk_stream.__aiter__()
        self._litellm = litellm
        self._kwargs = kwargs
        self._t = _Tracker()

    def __aiter__(self) -> AsyncFastStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._it.__anext__()
        except StopAsyncIteration:
            if not self._t.finished:
                err = _stream_failed(self._litellm, _eof_error(), self._kwargs, "".join(self._t.delivered),
                                     self._t.sent_first)
                await self.aclose()
                raise err from None
            raise
        except Exception as exc:  # noqa: BLE001
            err = _stream_failed(self._litellm, exc, self._kwargs, "".join(self._t.delivered), self._t.sent_first)
            await self.aclose()
            raise err from None
        self._t.see(chunk)
        return chunk

    async def aclose(self) -> None:
        await self._sdk.close()


# ------------------------------------------------------------------------------------------ the backend
class FastBackend:
    """``completion(**kwargs)`` / ``acompletion(**kwargs)`` with the provider's LiteLLM kwargs: the seam the
    provider calls instead of ``litellm.completion`` when :func:`backend_for` says the call qualifies."""

    def completion(self, **kwargs: Any) -> Any:
        from providers.litellm_provider import load_litellm

        litellm = load_litellm()
        sdk = _get_sdk()
        base, key = _resolve(litellm, kwargs)
        try:
            resp = _send(sdk, _client(False, base, key, kwargs.get("timeout")), _body(kwargs), kwargs.get("timeout"))
        except Exception as exc:  # noqa: BLE001 - mapped by LiteLLM's rules
            err = _request_failed(litellm, exc, kwargs, "sync")
            raise err from None
        return FastStream(litellm, resp, kwargs) if kwargs.get("stream") else resp

    async def acompletion(self, **kwargs: Any) -> Any:
        from providers.litellm_provider import load_litellm

        litellm = load_litellm()
        sdk = _get_sdk()
        base, key = _resolve(litellm, kwargs)
        stream = bool(kwargs.get("stream"))
        try:
            resp = await _asend(sdk, _client(True, base, key, kwargs.get("timeout")), _body(kwargs), kwargs.get("timeout"))
        except Exception as exc:  # noqa: BLE001
            err = _request_failed(litellm, exc, kwargs, "astream" if stream else "acall")
            raise err from None
        return AsyncFastStream(litellm, resp, kwargs) if stream else resp


_BACKEND = FastBackend()
