"""Model fallbacks: when one model fails in a way another model can fix, ask the next one.

A fallback chain wraps a provider's *per-model* call (the way pydantic-ai's ``FallbackModel`` wraps models)::

    llm.chat("Hi", model="openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest", "ollama_chat/qwen2.5:0.5b"])

    openai/gpt-4o-mini          the provider's own call, its retries included  -> 503 after 3 attempts
    anthropic/claude-3-5-haiku  (eligible failure: next model)                 -> 401 (no key)
    ollama_chat/qwen2.5:0.5b    (eligible failure: next model)                 -> answers; reply.model says so

Rules, and why:

- Move on after a *retryable* failure that survived the model's own retries (5xx, 429, connection, timeout), or
  after ``CredentialsError``, ``ModelNotFoundError``, ``ContextWindowExceededError``, ``ProviderTimeoutError``:
  another vendor or a bigger model can answer those.
- Never on the caller's own ``InvalidRequestError`` (a bad option is bad for every model), and never once the
  first streamed chunk reached the caller (the caller cannot un-see half a reply from another model).
- One deadline covers the chain: no model is started after the call's ``timeout`` has run out.
- A model is never tried twice in one call (duplicates in the chain are dropped): it already had its retries.
- When every model fails, the *last* error is raised; its message names each model tried and its
  ``attempted`` is ``[{"model", "kind", "message"}, ...]`` in order, secret-free. (With no fallbacks
  configured, errors are left exactly as the model raised them.)

The decorators at the bottom turn a provider's single-model ``chat``/``achat``/``stream_chat``/``astream_chat``
into the public methods: they add the ``fallbacks=`` keyword, the chain, and the telemetry of one call.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

from providers import telemetry
from providers.contract import LLMReply
from providers.deadline import MAX_TIMEOUT_S
from providers.errors import (
    ContextWindowExceededError,
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    redact,
)
from providers.request import check_model
from providers.streams import AsyncChatStream, ChatStream

__all__ = [
    "MAX_FALLBACKS",
    "check_fallbacks",
    "model_chain",
    "falls_back",
    "Chain",
    "chat_method",
    "achat_method",
    "stream_method",
    "astream_method",
]

#: More than this many fallbacks is a configuration mistake (and a way to multiply spend), not resilience.
MAX_FALLBACKS = 8
_MESSAGE_CAP = 300  # characters of each attempt's message kept in ``attempted``
_ELIGIBLE = (CredentialsError, ModelNotFoundError, ContextWindowExceededError, ProviderTimeoutError)


def check_fallbacks(value: object, field: str = "fallbacks", *, provider: str = "litellm") -> tuple[str, ...]:
    """Validate a fallbacks list (every model passes the same checks as the primary model: ``provider``'s model
    grammar); ``None`` is ``()``."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise InvalidRequestError(
            f"{field} must be a list of model strings, e.g. [\"anthropic/claude-3-5-haiku-latest\"]; "
            f"got {type(value).__name__}"
        )
    if len(value) > MAX_FALLBACKS:
        raise InvalidRequestError(f"{field} has {len(value)} models; at most {MAX_FALLBACKS} are allowed")
    out: list[str] = []
    for i, model in enumerate(value):
        if not isinstance(model, str):
            raise InvalidRequestError(f"{field}[{i}] must be a model string, got {type(model).__name__}")
        try:
            out.append(check_model(model, model, provider=provider))
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{field}[{i}]: {exc.message}") from None
    return tuple(out)


def model_chain(primary: str, fallbacks: Sequence[str]) -> tuple[str, ...]:
    """``primary`` then ``fallbacks``, each model once, in order."""
    return tuple(dict.fromkeys((primary, *fallbacks)))


def falls_back(error: BaseException) -> bool:
    """Whether another model may answer after ``error`` (see the module docstring for why)."""
    if not isinstance(error, ProviderError):
        return False  # a bug, a cancellation, KeyboardInterrupt: never hidden behind another model
    if isinstance(error, _ELIGIBLE):
        return True
    if isinstance(error, InvalidRequestError):
        return False
    return bool(error.retryable)


class Chain:
    """The state of one call's walk down its models: what was tried, and the deadline over all of it."""

    __slots__ = ("models", "deadline", "attempted", "started", "_index", "_call")

    def __init__(self, models: Sequence[str], deadline_s: float | None = None, call: Any = None) -> None:
        if not models:
            raise ValueError("a fallback chain needs at least one model")
        self.models = tuple(models)
        self.started = time.monotonic()
        self.deadline = None if deadline_s is None else self.started + float(deadline_s)
        self.attempted: list[dict[str, str]] = []
        self._index = 0
        self._call = call if call is not None else telemetry.NO_CALL

    @property
    def model(self) -> str:
        """The model being tried now."""
        return self.models[self._index]

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def options(self, kw: dict[str, Any]) -> dict[str, Any]:
        """The call's keywords for the current model: with fallbacks, its ``timeout`` is what is left of the
        chain's deadline (the provider's own per-call deadline mechanism then bounds it)."""
        left = self.time_left()
        if left is None or len(self.models) == 1:
            return kw
        return {**kw, "timeout": max(left, 0.001)}

    def failed(self, error: ProviderError) -> None:
        """Record that the current model failed; move to the next one, or raise the (annotated) error.

        Called outside ``except`` blocks, so the raised error carries no chained upstream exception."""
        model = self.model
        self.attempted.append({"model": model, "kind": error.kind, "message": redact(error.message)[:_MESSAGE_CAP]})
        last = self._index + 1 >= len(self.models)
        left = self.time_left()
        out_of_time = left is not None and left <= 0
        if not falls_back(error) or last or out_of_time:
            if len(self.models) == 1:
                raise error from None  # no fallbacks configured: the error is exactly the model's own
            skipped = () if last or not falls_back(error) else self.models[self._index + 1 :]
            raise _annotate(error, self.attempted, skipped) from None
        self._index += 1
        self._call.fallback(model, self.model, error, len(self.attempted))

    def answered(self, reply: LLMReply) -> LLMReply:
        """The reply, with ``latency_ms`` covering the whole chain when earlier models failed first."""
        if not self.attempted:
            return reply
        latency_ms = int((time.monotonic() - self.started) * 1000)
        return dataclasses.replace(reply, usage={**reply.usage, "latency_ms": max(latency_ms, reply.usage["latency_ms"])})

    # ------------------------------------------------------------------ the loops
    def run(self, call_one: Callable[[str], LLMReply]) -> LLMReply:
        while True:
            self._call.model_started(self.model)
            try:
                reply = call_one(self.model)
            except ProviderError as exc:
                error = exc
            else:
                return self.answered(reply)
            self.failed(error)

    async def arun(self, call_one: Callable[[str], Awaitable[LLMReply]]) -> LLMReply:
        while True:
            self._call.model_started(self.model)
            try:
                reply = await call_one(self.model)
            except ProviderError as exc:
                error = exc
            else:
                return self.answered(reply)
            self.failed(error)

    def open(self, open_one: Callable[[str], Any]) -> Any:
        """Open the first stream that opens (validation and key checks happen here, with no network)."""
        while True:
            self._call.model_started(self.model)
            try:
                return open_one(self.model)
            except ProviderError as exc:
                error = exc
            self.failed(error)

    def stream(self, stream: ChatStream, open_one: Callable[[str], ChatStream]) -> Iterator[str]:
        """Yield the chunks of the first model whose stream produces one; after that chunk, no fallback."""
        while True:
            try:
                first = next(stream)
            except StopIteration as stop:  # an empty but complete reply
                return self.answered(stop.value if stop.value is not None else stream.reply)
            except ProviderError as exc:
                error = exc
            else:
                break
            stream.close()
            self.failed(error)
            stream = self.open(open_one)
        try:
            yield first
            reply = yield from stream
        finally:
            stream.close()
        return self.answered(reply if reply is not None else stream.reply)

    async def astream(
        self, stream: AsyncChatStream, open_one: Callable[[str], AsyncChatStream]
    ) -> AsyncIterator[str | LLMReply]:
        """Async twin of :meth:`stream`: yields chunks, then the final :class:`LLMReply` (the async convention)."""
        while True:
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                yield self.answered(stream.reply)
                return
            except ProviderError as exc:
                error = exc
            else:
                break
            await stream.aclose()
            self.failed(error)
            stream = self.open(open_one)
        try:
            yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()
        yield self.answered(stream.reply)


def _annotate(error: ProviderError, attempted: list[dict[str, str]], skipped: Sequence[str]) -> ProviderError:
    """Attach ``attempted`` and, when more than one model was involved, name them all in the message (redacted
    once more: a chain's message gathers text from several upstreams)."""
    error.attempted = [dict(a) for a in attempted]
    error.message = redact(error.message)
    if len(attempted) > 1 or skipped:
        tried = ", ".join(f"{a['model']} ({a['kind']})" for a in attempted)
        note = f"models tried in order: {tried}"
        if skipped:
            note += f"; not tried, the deadline had passed: {', '.join(skipped)}"
        error.message = f"{error.message} [{note}]"
    error.args = (error.message,)
    return error


# ---------------------------------------------------------------------------------------- provider decorators
def _models(provider: Any, model: str | None, fallbacks: object) -> tuple[str, ...]:
    primary = check_model(model, provider.model_default, provider=provider.name)
    chosen = getattr(provider, "fallbacks", ()) if fallbacks is None else check_fallbacks(fallbacks, provider=provider.name)
    return model_chain(primary, chosen)


def _plain(provider: Any, model: str | None, fallbacks: object) -> tuple[str] | None:
    """:func:`_models` for the common case of no fallbacks at all (what it would return, with less work)."""
    if fallbacks is None and not getattr(provider, "fallbacks", ()):
        return (check_model(model, provider.model_default, provider=provider.name),)
    return None


def _deadline(provider: Any, kw: dict[str, Any]) -> float | None:
    """The chain's deadline: the request's ``timeout`` option, else the provider's (an invalid value is left
    for the provider's own validation to refuse)."""
    timeout = kw.get("timeout")
    if timeout is None:
        timeout = getattr(provider, "timeout", None)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_S:
        return None  # (also an int past float's range, which float() would refuse with OverflowError)
    return float(timeout)


def chat_method(one: Callable[..., LLMReply]) -> Callable[..., LLMReply]:
    """``chat(prompt, *, model, fallbacks, **kw)`` over the provider's single-model ``one(prompt, model=, **kw)``."""

    @functools.wraps(one)
    def chat(self: Any, prompt: str, *, model: str | None = None, fallbacks: Sequence[str] | None = None, **kw: Any) -> LLMReply:
        models = _plain(self, model, fallbacks) or _models(self, model, fallbacks)
        if len(models) == 1 and telemetry.idle():
            # The plain lane: one model and nothing recording, so a chain would only add layers to the hot path.
            # Same result and same error as the chain's (which re-raises a lone model's error ``from None``).
            try:
                return one(self, prompt, model=models[0], **kw)
            except ProviderError as exc:
                error = exc
            raise error from None
        with telemetry.start_call(self.name, models[0], kw, prompt=prompt, stream=False) as call:
            chain = Chain(models, _deadline(self, kw), call)
            reply = chain.run(lambda m: one(self, prompt, model=m, **chain.options(kw)))
            call.succeeded(reply)
            return reply

    return chat


def achat_method(one: Callable[..., Awaitable[LLMReply]]) -> Callable[..., Awaitable[LLMReply]]:
    """Async twin of :func:`chat_method`."""

    @functools.wraps(one)
    async def achat(
        self: Any, prompt: str, *, model: str | None = None, fallbacks: Sequence[str] | None = None, **kw: Any
    ) -> LLMReply:
        models = _plain(self, model, fallbacks) or _models(self, model, fallbacks)
        if len(models) == 1 and telemetry.idle():  # the plain lane, as in chat_method
            try:
                return await one(self, prompt, model=models[0], **kw)
            except ProviderError as exc:
                error = exc
            raise error from None
        with telemetry.start_call(self.name, models[0], kw, prompt=prompt, stream=False) as call:
            chain = Chain(models, _deadline(self, kw), call)
            reply = await chain.arun(lambda m: one(self, prompt, model=m, **chain.options(kw)))
            call.succeeded(reply)
            return reply

    return achat


def stream_method(one: Callable[..., ChatStream]) -> Callable[..., ChatStream]:
    """``stream_chat`` with fallbacks before the first chunk. Bad input still raises at the call, not mid-stream."""

    @functools.wraps(one)
    def stream_chat(
        self: Any, prompt: str, *, model: str | None = None, fallbacks: Sequence[str] | None = None, **kw: Any
    ) -> ChatStream:
        models = _models(self, model, fallbacks)
        call = telemetry.start_call(self.name, models[0], kw, prompt=prompt, stream=True)

        def open_one(m: str) -> ChatStream:
            return one(self, prompt, model=m, **chain.options(kw))

        with call.opening():
            chain = Chain(models, _deadline(self, kw), call)
            first = chain.open(open_one)
        return ChatStream(call.stream(chain.stream(first, open_one)))

    return stream_chat


def astream_method(one: Callable[..., AsyncChatStream]) -> Callable[..., AsyncChatStream]:
    """Async twin of :func:`stream_method`."""

    @functools.wraps(one)
    def astream_chat(
        self: Any, prompt: str, *, model: str | None = None, fallbacks: Sequence[str] | None = None, **kw: Any
    ) -> AsyncChatStream:
        models = _models(self, model, fallbacks)
        call = telemetry.start_call(self.name, models[0], kw, prompt=prompt, stream=True)

        def open_one(m: str) -> AsyncChatStream:
            return one(self, prompt, model=m, **chain.options(kw))

        with call.opening():
            chain = Chain(models, _deadline(self, kw), call)
            first = chain.open(open_one)
        return AsyncChatStream(call.astream(chain.astream(first, open_one)))

    return astream_chat
