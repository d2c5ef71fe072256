"""LiteLLMProvider: one provider for OpenAI, Ollama, Anthropic, ... through LiteLLM.

What it adds over calling ``litellm.completion`` yourself (see shared/notes/litellm.md for the measurements):

- litellm is imported lazily, once, with its price map forced local (no import-time fetch), offline mode on
  (no Hugging Face tokenizer download stalling the first stream) and its stdout banner suppressed;
- per-call ``api_key``/``api_base``; LiteLLM globals are never touched per call;
- ``timeout`` (the provider's, or a request's ``timeout`` option) is a deadline for the WHOLE call: retries,
  back-off and a stream to its last chunk (:mod:`providers.deadline`); closing a stream closes its upstream
  connection at once;
- the SDK's hidden retries are off (``max_retries=0``) and :mod:`providers.retry` is the only retry loop;
- a missing key is reported at once, with no network, naming the variable to set;
- errors mapped to :mod:`providers.errors` with secret-free, actionable messages;
- usage from the provider's own counts (streams ask for ``include_usage``); cost from LiteLLM's price map in
  integer micro-USD, 0 for local models, ``None`` when the model has no price;
- smoke mode: LiteLLM's own ``mock_response`` path, deterministic, no key and no network.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from providers.attachments import Attachment
from providers.contract import LLMReply
from providers.errors import (
    CredentialsError,
    InvalidRequestError,
    MissingDependencyError,
    ProviderError,
    ProviderTimeoutError,
    UnsupportedAttachmentError,
)
from providers.deadline import Deadline, check_timeout, enter, leave
from providers.fallback import achat_method, astream_method, chat_method, check_fallbacks, stream_method
from providers.litellm_errors import LOCAL_PROVIDERS, OLLAMA_PROVIDERS, Target, base_url, map_litellm_error
from providers.model_names import check_inferred_provider
from providers.redact import install_log_redaction, remember_secret
from providers.request import check_attachments, check_model, check_options, check_prompt
from providers.retry import RetryPolicy, aretry_call, retry_call, until
from providers.streams import AsyncChatStream, ChatStream
from providers.vendors import ollama_base
from providers.usage import make_usage, to_micro_usd

__all__ = ["LiteLLMProvider", "load_litellm", "DEFAULT_OLLAMA_BASE"]

log = logging.getLogger("providers.litellm")

DEFAULT_OLLAMA_BASE = "http://localhost:11434"
DEFAULT_TIMEOUT_S = 60.0
#: Loggers that may carry upstream text or request details: theirs and ours.
_REDACTED_LOGGERS = (
    "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai", "openai._base_client", "httpx", "httpcore",
    "httpcore.http11", "httpcore.connection", "providers.litellm", "providers.retry",
)

_litellm = None
_load_lock = threading.Lock()


def load_litellm():
    """Import litellm once, configured for a library host. Call it early (e.g. before a Modal memory snapshot)
    to move the ~3 s import off the first request."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _load_lock:
        if _litellm is None:
            # "true" (any case) is required: "1" is NOT honoured by litellm.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
            try:
                litellm = _import_litellm()
            except ModuleNotFoundError as exc:
                if exc.name != "litellm":
                    raise
                from providers.registry import LITELLM_MISSING

                raise MissingDependencyError(LITELLM_MISSING, provider="litellm") from None

            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner on stdout per exception
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                logging.getLogger(name).setLevel(logging.WARNING)
            from providers.deadline_http import install

            install(litellm)  # sync socket waits end by the call's deadline (an empty pool: no connection yet)
            # LiteLLM logs whole upstream error bodies at DEBUG (a key the upstream echoes included), and a
            # host may turn DEBUG on: every record of these loggers is redacted before any handler sees it.
            install_log_redaction(*_REDACTED_LOGGERS)
            _litellm = litellm
    return _litellm


def _import_litellm():
    """``import litellm`` with the cyclic collector paused, then its heap frozen (``gc.freeze``).

    Why: the import builds ~370,000 long-lived objects. The full collections it triggers along the way walk
    them again and again, every later full collection would walk them too (0.2-0.5 s on a 2-core machine: a
    pause on the hot path; frozen, under 1 ms), and so would the interpreter's last collection at exit.
    Measured (CPU of ``python -c "import litellm"``): 3.9 s as is, 2.2 s paused and frozen; see bench/README.md."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import litellm
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
    return litellm


def _split_provider(model: str) -> tuple[str, str]:
    """'ollama_chat/qwen2.5:0.5b' -> ('ollama_chat', 'qwen2.5:0.5b'). Without a prefix LiteLLM infers it."""
    prefix, sep, rest = model.partition("/")
    if sep:
        return prefix, rest
    try:
        _, provider, _, _ = load_litellm().get_llm_provider(model)
    except Exception:  # noqa: BLE001 - an unknown bare name: LiteLLM will say so at call time
        return "", model
    return provider, model


class LiteLLMProvider:
    """``get_llm_provider("litellm", model_default=..., api_base=..., api_key=..., timeout=..., max_retries=...)``.

    ``smoke=True`` runs LiteLLM's ``mock_response`` path: same code path and response objects, no network.
    """

    name = "litellm"

    def __init__(
        self,
        model_default: str = "openai/gpt-4o-mini",
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        smoke: bool = False,
        fast_path: bool = True,
        fallbacks: Sequence[str] | None = None,
    ) -> None:
        timeout = check_timeout(timeout)
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.model_default = check_model(model_default, "openai/gpt-4o-mini")
        self.api_base = api_base
        self._api_key = api_key  # private: never in repr, logs or errors
        remember_secret(api_key, owner=self)  # every redact() removes it while this provider lives
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy(max_attempts=max_retries + 1)
        self.smoke = bool(smoke)
        self.fast_path = bool(fast_path)  # False: every call through litellm.completion (providers.openai_fast)
        #: Models tried, in order, when the requested one fails in a way another model can fix (providers.fallback).
        self.fallbacks = check_fallbacks(fallbacks)

    def __repr__(self) -> str:
        key = ", api_key=<set>" if self._api_key else ""
        fallbacks = f", fallbacks={list(self.fallbacks)!r}" if self.fallbacks else ""
        return (
            f"LiteLLMProvider(model_default={self.model_default!r}, api_base={self.api_base!r}{key}, "
            f"timeout={self.timeout:g}, smoke={self.smoke}{fallbacks})"
        )

    # ------------------------------------------------------------------ request building
    def _target(self, model: str) -> Target:
        llm_provider, bare = _split_provider(model)
        api_base = self.api_base
        if llm_provider in OLLAMA_PROVIDERS and not api_base:
            api_base = ollama_base()[0]  # LLM_API_BASE, else LiteLLM's own OLLAMA_API_BASE, else the default
        return Target(model, llm_provider, bare, api_base, self._api_key)

    def _check_provider(self, t: Target) -> None:
        """Refuse a model whose prefix is no LiteLLM provider before LiteLLM's long error (and any network); a
        bare name's inferred provider must be one the grammar vets."""
        if "/" not in t.model:
            check_inferred_provider(t.model, t.llm_provider)
        if "/" in t.model and t.llm_provider not in load_litellm().provider_list:
            raise InvalidRequestError(
                f"unknown provider prefix '{t.llm_provider}' in model '{t.model}': use a LiteLLM provider prefix "
                "such as openai/, anthropic/, ollama_chat/ (list: https://docs.litellm.ai/docs/providers)",
                provider=self.name, model=t.model,
            )

    def _check_credentials(self, t: Target) -> None:
        """Fail at once, with no network, when the model needs a key that is not set (LiteLLM would otherwise
        answer a missing OpenAI key with a retryable-looking HTTP 500)."""
        if self.smoke or self._api_key or t.llm_provider in LOCAL_PROVIDERS:
            return
        missing = load_litellm().validate_environment(model=t.model, api_base=t.api_base).get("missing_keys") or []
        if any(not k.endswith("_API_BASE") for k in missing):
            raise CredentialsError(f"{t.key_env} missing or {t.vendor} unreachable.", provider=self.name, model=t.model)

    def _check_vision(self, t: Target, attachments: tuple[Attachment, ...]) -> None:
        """Refuse images for a model LiteLLM's map knows and does not mark as vision-capable (no network:
        Ollama models are skipped because LiteLLM would query the server)."""
        if not any(a.is_image for a in attachments) or t.llm_provider in OLLAMA_PROVIDERS:
            return
        try:
            info = load_litellm().get_model_info(model=t.model)
        except Exception:  # noqa: BLE001 - not in the map: unknown, let the provider decide
            return
        if not info.get("supports_vision"):
            raise UnsupportedAttachmentError(
                f"{t.model} does not take images (LiteLLM's model map has no vision support for it): use a "
                "vision model such as openai/gpt-4o-mini, or send text attachments only",
                provider=self.name, model=t.model,
            )

    def _messages(self, prompt: str, attachments: tuple[Attachment, ...], system: str | None) -> list[dict]:
        messages: list[dict] = [{"role": "system", "content": system}] if system else []
        if not attachments:
            messages.append({"role": "user", "content": prompt})
            return messages
        parts: list[dict] = [{"type": "text", "text": prompt}]
        for a in attachments:
            if a.is_image:
                parts.append({"type": "image_url", "image_url": {"url": a.data_url()}})
            else:
                parts.append({"type": "text", "text": f"[attachment {a.name}]\n{a.text}"})
        messages.append({"role": "user", "content": parts})
        return messages

    def _smoke_text(self, model: str, prompt: str, attachments: tuple[Attachment, ...]) -> str:
        text = f"smoke reply from {model}: {prompt}"
        if attachments:
            text += " [attachments: " + "; ".join(f"{a.name} {a.mime} sha256:{a.sha256[:12]}" for a in attachments) + "]"
        return text

    def _prepare(
        self, prompt: object, model: str | None, attachments: Sequence[Attachment] | None, options: dict[str, Any]
    ) -> tuple[Target, dict[str, Any]]:
        prompt = check_prompt(prompt)
        model = check_model(model, self.model_default)
        atts = check_attachments(attachments)
        options = check_options(options)
        t = self._target(model)
        self._check_provider(t)
        self._check_credentials(t)
        self._check_vision(t, atts)
        system = options.pop("system", None)
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": self._messages(prompt, atts, system),
            "timeout": options.pop("timeout", None) or self.timeout,  # the deadline; also each read's own bound
            "max_retries": 0,  # the openai SDK would retry 2x inside each of our attempts
            **options,
        }
        if t.api_base:
            kwargs["api_base"] = t.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        if self.smoke:
            kwargs["mock_response"] = self._smoke_text(model, prompt, atts)
        return t, kwargs

    # ------------------------------------------------------------------ results
    def _usd_micros(self, t: Target, cost: float | None, tokens_in: int, tokens_out: int) -> int | None:
        if self.smoke:
            return 0  # nothing was spent: LiteLLM would price its mocked reply as if it were real
        if t.llm_provider in LOCAL_PROVIDERS:
            return 0  # local compute; LiteLLM sometimes says None for these (ollama_chat/llama3)
        if tokens_in == 0 and tokens_out == 0:
            # No usage reported (a billed call always has input tokens): the price is unknown, never a made-up
            # 0, so a spend cap (batch --max-usd) cannot count an unmetered reply as free.
            return None
        if cost is None:
            try:
                cin, cout = load_litellm().cost_per_token(model=t.model, prompt_tokens=tokens_in, completion_tokens=tokens_out)
                cost = cin + cout
            except Exception:  # noqa: BLE001 - ModelNotMappedError & co: the price is unknown
                return None
        return to_micro_usd(cost)

    def _with_choices(self, t: Target, resp: Any) -> Any:
        """A 200 without choices fails its attempt inside the retry loop, so the error records ``attempts`` like
        every other failure (it is not retried: base ``ProviderError`` is not retryable)."""
        if not (getattr(resp, "choices", None) or []):
            raise ProviderError(f"{t.vendor} returned no choices for {t.model}", provider=self.name, model=t.model)
        return resp

    def _reply(self, t: Target, resp: Any, started: float) -> LLMReply:
        latency_ms = int((time.perf_counter() - started) * 1000)
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise ProviderError(f"{t.vendor} returned no choices for {t.model}", provider=self.name, model=t.model)
        text = choices[0].message.content or ""
        u = getattr(resp, "usage", None)
        tokens_in = int(getattr(u, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(u, "completion_tokens", 0) or 0)
        cost = (getattr(resp, "_hidden_params", None) or {}).get("response_cost")
        usage = make_usage(tokens_in, tokens_out, latency_ms, self._usd_micros(t, cost, tokens_in, tokens_out))
        return LLMReply(text=text, provider=self.name, model=t.model, usage=usage)

    def _backend(self, t: Target, kwargs: dict[str, Any]) -> Any:
        """What sends this call: the openai SDK fast path when LiteLLM itself would send it over the OpenAI
        protocol unchanged (see providers.openai_fast), else litellm. Both raise LiteLLM's exception classes."""
        litellm = load_litellm()
        if self.fast_path and not self.smoke:  # smoke stays on LiteLLM's mock_response path
            from providers.openai_fast import backend_for

            return backend_for(litellm, t.llm_provider, t.bare_model, kwargs) or litellm
        return litellm

    def _classifier(self, t: Target, kwargs: dict[str, Any]):
        return lambda exc: map_litellm_error(exc, t, timeout=kwargs["timeout"])

    def _on_deadline(self, t: Target, deadline: Deadline, acc: _StreamAccumulator | None = None):
        """The error for a call its deadline ended: the deadline, what it covers, and what to do."""

        def error(last: ProviderError, attempts: int) -> ProviderError:
            plural = "s" if attempts != 1 else ""
            partial = ""
            if acc is not None and acc.parts:
                partial = f" The reply is incomplete: {len(acc.parts)} chunk(s) had been delivered."
            return ProviderTimeoutError(
                f"{t.vendor} did not finish within the {deadline.timeout_s:g}s deadline (model {t.model}, "
                f"{attempts} attempt{plural}; timeout= covers the whole call, retries and stream included).{partial} "
                f"Raise timeout= (or the request's timeout option), or check the server at "
                f"{base_url(t) or 'its default URL'}.",
                provider=self.name, model=t.model, attempts=attempts,
            )

        return error

    # ------------------------------------------------------------------ chat
    # Each public method is written for one model; the decorators add ``fallbacks=``, the chain and telemetry.
    @chat_method
    def chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> LLMReply:
        t, kwargs = self._prepare(prompt, model, attachments, options)
        deadline = Deadline(kwargs["timeout"])
        litellm = self._backend(t, kwargs)
        started = time.perf_counter()
        resp = retry_call(lambda: self._with_choices(t, litellm.completion(**kwargs)), self._classifier(t, kwargs),
                          self.retry, deadline=deadline, on_deadline=self._on_deadline(t, deadline))
        return self._reply(t, resp, started)

    @achat_method
    async def achat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> LLMReply:
        t, kwargs = self._prepare(prompt, model, attachments, options)
        deadline = Deadline(kwargs["timeout"])
        litellm = self._backend(t, kwargs)
        started = time.perf_counter()

        async def attempt() -> Any:
            return self._with_choices(t, await litellm.acompletion(**kwargs))

        resp = await aretry_call(attempt, self._classifier(t, kwargs), self.retry,
                                 deadline=deadline, on_deadline=self._on_deadline(t, deadline))
        return self._reply(t, resp, started)

    # ------------------------------------------------------------------ streaming
    @stream_method
    def stream_chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> ChatStream:
        """The deadline starts now (not at the first ``next``); ``close()`` closes the upstream connection."""
        t, kwargs = self._prepare(prompt, model, attachments, options)  # bad input raises here, not mid-iteration
        kwargs.update(stream=True, stream_options={"include_usage": True})
        return ChatStream(self._stream(t, kwargs, Deadline(kwargs["timeout"])))

    def _stream(self, t: Target, kwargs: dict[str, Any], deadline: Deadline) -> Iterator[str]:
        litellm = self._backend(t, kwargs)
        classify = self._classifier(t, kwargs)
        acc = _StreamAccumulator()
        started = time.perf_counter()
        it: Any = None

        def open_until_first_text() -> tuple[Any, list[str]]:
            # Retried as a whole: nothing has reached the caller yet. A failed attempt's stream is closed here.
            acc.reset()
            stream = litellm.completion(**kwargs)
            try:
                for chunk in stream:
                    text = acc.add(chunk)
                    if text:
                        return stream, [text]
            except BaseException:
                _close_quietly(stream)
                raise
            return stream, []

        try:
            it, first = retry_call(open_until_first_text, classify, self.retry, deadline=deadline,
                                   on_deadline=self._on_deadline(t, deadline))
            yield from first
            broken: ProviderError | None = None
            try:
                while True:
                    token = enter(deadline)  # only around the read: never held across the yield below
                    try:
                        chunk = next(it, _END)
                    finally:
                        leave(token)
                    if chunk is _END:
                        break
                    text = acc.add(chunk)
                    if text:
                        yield text
                    if deadline.expired:  # also bounds a stream whose reads are not clipped (a host's own client)
                        raise TimeoutError("deadline passed between chunks")
            except Exception as exc:  # noqa: BLE001 - after the first chunk: no retry, no silent truncation
                broken = self._broken_off(exc, classify, t, acc, deadline)
            if broken is not None:
                raise broken  # outside the handler: the upstream exception must not ride along as __context__
            return self._stream_reply(t, kwargs, acc, started)
        finally:  # done, failed, closed (GeneratorExit) or collected: the upstream connection goes now
            if it is not None:
                _close_quietly(it)

    @astream_method
    def astream_chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> AsyncChatStream:
        t, kwargs = self._prepare(prompt, model, attachments, options)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        return AsyncChatStream(self._astream(t, kwargs, Deadline(kwargs["timeout"])))

    async def _astream(self, t: Target, kwargs: dict[str, Any], deadline: Deadline) -> AsyncIterator[str | LLMReply]:
        litellm = self._backend(t, kwargs)
        classify = self._classifier(t, kwargs)
        acc = _StreamAccumulator()
        started = time.perf_counter()
        it: Any = None

        async def open_until_first_text() -> tuple[Any, list[str]]:
            acc.reset()
            stream = await litellm.acompletion(**kwargs)
            try:
                async for chunk in stream:
                    text = acc.add(chunk)
                    if text:
                        return stream, [text]
            except BaseException:  # failed, timed out or cancelled: this attempt's connection goes now
                await _aclose_quietly(stream)
                raise
            return stream, []

        try:
            it, first = await aretry_call(open_until_first_text, classify, self.retry, deadline=deadline,
                                          on_deadline=self._on_deadline(t, deadline))
            for text in first:
                yield text
            broken: ProviderError | None = None
            try:
                while True:
                    async with until(deadline):  # per read: a timeout must never fire while the caller holds a chunk
                        chunk = await anext(it, _END)
                    if chunk is _END:
                        break
                    text = acc.add(chunk)
                    if text:
                        yield text
            except Exception as exc:  # noqa: BLE001
                broken = self._broken_off(exc, classify, t, acc, deadline)
            if broken is not None:
                raise broken  # outside the handler, as in _stream
            yield self._stream_reply(t, kwargs, acc, started)
        finally:  # done, failed, aclose()d or cancelled: close the upstream connection now, not at GC
            if it is not None:
                await _aclose_quietly(it)

    def _broken_off(
        self, exc: BaseException, classify, t: Target, acc: _StreamAccumulator, deadline: Deadline
    ) -> ProviderError:
        """A stream that failed after text reached the caller: one attempt, never retried, and a message that
        says the reply is incomplete (the cause alone, e.g. "unreachable", would hide that part of it was
        delivered). Past the deadline it is the deadline's :class:`ProviderTimeoutError`."""
        if deadline.expired:
            return self._on_deadline(t, deadline, acc)(classify(exc), 1)
        error = exc if isinstance(exc, ProviderError) else classify(exc)
        error.attempts = 1
        error.message = (
            f"The {t.vendor} stream for {t.model} broke off after {len(acc.parts)} chunk(s); the reply is incomplete "
            f"and was not retried (part of it had been delivered): call again for a full reply. Cause: {error.message}"
        )
        error.args = (error.message,)
        return error

    def _stream_reply(self, t: Target, kwargs: dict[str, Any], acc: _StreamAccumulator, started: float) -> LLMReply:
        latency_ms = int((time.perf_counter() - started) * 1000)
        text = "".join(acc.parts)
        if acc.tokens_in is None:  # the provider sent no usage chunk: count with LiteLLM's tokenizer
            litellm = load_litellm()
            acc.tokens_in = litellm.token_counter(model=t.model, messages=kwargs["messages"])
            acc.tokens_out = litellm.token_counter(model=t.model, text=text, count_response_tokens=True)
        usage = make_usage(
            acc.tokens_in, acc.tokens_out or 0, latency_ms, self._usd_micros(t, None, acc.tokens_in, acc.tokens_out or 0)
        )
        return LLMReply(text=text, provider=self.name, model=t.model, usage=usage)


_END = object()


def _close_quietly(stream: Any) -> None:
    """Close an upstream stream (LiteLLM's wrapper closes the HTTP response, so the connection is released)."""
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing is best effort; the stream is being abandoned anyway
        log.debug("closing an upstream stream failed", exc_info=True)


async def _aclose_quietly(stream: Any) -> None:
    try:
        await stream.aclose()
    except Exception:  # noqa: BLE001
        log.debug("closing an upstream stream failed", exc_info=True)


class _StreamAccumulator:
    """Collects text deltas and the usage chunk (the last one, with ``choices == []``)."""

    __slots__ = ("parts", "tokens_in", "tokens_out")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.parts: list[str] = []
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None

    def add(self, chunk: Any) -> str:
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            self.tokens_in = int(usage.prompt_tokens or 0)
            self.tokens_out = int(usage.completion_tokens or 0)
        choices = chunk.choices
        if not choices:
            return ""
        text = choices[0].delta.content or ""
        if text:
            self.parts.append(text)
        return text


