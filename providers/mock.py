"""MockProvider: deterministic, free, offline. A real provider, shipped, so callers can test against it.

- Same prompt (and model, options, attachments) -> same text and the same usage, every time.
- ``enqueue(...)`` scripts the next replies: strings are returned as-is, exceptions (instances or classes)
  are raised — so callers can test their handling of every error class.
- The ``mock_error`` option (e.g. ``mock_error="rate_limited"``) raises that error kind: this is how a failure
  is scripted from the other side of a process boundary (CLI, Modal payload), where no object can be passed.
- Streaming splits exactly the text ``chat`` returns.
- ``timeout`` (constructor, or the ``timeout`` option per request) is a deadline like the real providers': a
  ``latency_ms`` longer than it sleeps until the deadline, then raises :class:`ProviderTimeoutError`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from providers.attachments import Attachment
from providers.contract import LLMReply
from providers.errors import (
    ContextWindowExceededError,
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from providers.deadline import check_timeout
from providers.fallback import achat_method, astream_method, chat_method, check_fallbacks, stream_method
from providers.request import check_attachments, check_model, check_options, check_prompt
from providers.streams import AsyncChatStream, ChatStream
from providers.usage import make_usage

__all__ = ["MockProvider", "MOCK_ERRORS"]

#: ``mock_error`` option values -> the error they raise (messages mimic the real providers').
MOCK_ERRORS: dict[str, ProviderError] = {
    "unavailable": ProviderUnavailableError("Mock provider unavailable (scripted failure).", provider="mock"),
    "credentials": CredentialsError("MOCK_API_KEY missing or Mock unreachable (scripted failure).", provider="mock"),
    "model_not_found": ModelNotFoundError("Mock model not found (scripted failure).", provider="mock"),
    "rate_limited": RateLimitError("Mock rate limit (scripted failure).", provider="mock", retry_after=1.0),
    "timeout": ProviderTimeoutError("Mock timed out (scripted failure).", provider="mock"),
    "invalid_request": InvalidRequestError("Mock rejected the request (scripted failure).", provider="mock"),
    "context_window_exceeded": ContextWindowExceededError("Mock context window exceeded (scripted failure).", provider="mock"),
}


def _words(text: str) -> int:
    return len(text.split())


def _split(text: str) -> list[str]:
    """Split into word chunks that keep their leading whitespace, so ''.join(chunks) == text."""
    chunks: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        i = start
        while i < n and text[i].isspace():
            i += 1
        while i < n and not text[i].isspace():
            i += 1
        chunks.append(text[start:i])
        start = i
    return chunks


class MockProvider:
    """Deterministic provider. ``latency_ms`` makes each call really take that long (and report it)."""

    name = "mock"

    def __init__(
        self, model_default: str = "mock", *, latency_ms: int = 0, timeout: float | None = None,
        fallbacks: Sequence[str] | None = None,
    ) -> None:
        self.model_default = model_default
        self.latency_ms = int(latency_ms)
        self.timeout = None if timeout is None else check_timeout(timeout)
        self.fallbacks = check_fallbacks(fallbacks, provider=self.name)
        self._queue: deque[str | BaseException | type[BaseException]] = deque()
        self._lock = threading.Lock()
        #: The last 1,000 calls' (prompt, model, options, attachment names), for assertions in callers' tests.
        self.calls: deque[dict[str, Any]] = deque(maxlen=1000)

    # ------------------------------------------------------------------ scripting
    def enqueue(self, *replies: str | BaseException | type[BaseException]) -> MockProvider:
        """Script the next replies (FIFO). Strings are replies; exceptions (or classes) are raised."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def _next_scripted(self) -> str | None:
        with self._lock:
            if not self._queue:
                return None
            item = self._queue.popleft()
        if isinstance(item, type) and issubclass(item, BaseException):
            item = item(f"scripted {item.__name__} from MockProvider")
        if isinstance(item, BaseException):
            raise item
        return str(item)

    # ------------------------------------------------------------------ core
    def _reply(
        self, prompt: object, model: str | None, attachments: Sequence[Attachment] | None, options: dict[str, Any]
    ) -> LLMReply:
        mock_error = options.pop("mock_error", None)
        prompt = check_prompt(prompt)
        model = check_model(model, self.model_default, provider=self.name)
        atts = check_attachments(attachments)
        options = check_options(options)
        self.calls.append({"prompt": prompt, "model": model, "options": options, "attachments": [a.name for a in atts]})
        if mock_error is not None:
            if mock_error not in MOCK_ERRORS:
                raise InvalidRequestError(f"unknown mock_error {mock_error!r}; known: {', '.join(MOCK_ERRORS)}")
            template = MOCK_ERRORS[mock_error]
            extra = {"retry_after": template.retry_after} if isinstance(template, RateLimitError) else {}
            raise type(template)(template.message, provider="mock", model=model, **extra)
        text = self._next_scripted()
        if text is None:
            text = f"mock reply to: {prompt}"
            if atts:
                text += " [attachments: " + "; ".join(
                    f"{a.name} {a.mime} {a.size} bytes sha256:{a.sha256[:12]}" for a in atts
                ) + "]"
        tokens_in = _words(prompt) + _words(options.get("system", "")) + sum(
            _words(a.text) if not a.is_image else 85 for a in atts  # 85: OpenAI's flat cost of a low-detail image
        )
        usage = make_usage(tokens_in, _words(text), self.latency_ms, 0)
        return LLMReply(text=text, provider=self.name, model=model, usage=usage)

    # ------------------------------------------------------------------ latency under a deadline
    def _timeout(self, options: dict[str, Any]) -> float | None:
        """The request's ``timeout`` option (validated like every option), else the provider's."""
        return check_options({"timeout": options.pop("timeout", None)}).get("timeout") or self.timeout

    def _delay(self, timeout: float | None) -> tuple[float, ProviderError | None]:
        """How long to sleep, and the deadline error to raise after it when the latency exceeds the timeout."""
        delay = self.latency_ms / 1000
        if timeout is None or delay <= timeout:
            return delay, None
        return timeout, ProviderTimeoutError(
            f"Mock did not finish within the {timeout:g}s deadline (its latency is {delay:g}s): raise timeout= "
            "(or the request's timeout option), or lower latency_ms.", provider="mock", attempts=1,
        )

    def _sleep(self, timeout: float | None) -> None:
        delay, error = self._delay(timeout)
        if delay:
            time.sleep(delay)
        if error is not None:
            raise error

    async def _asleep(self, timeout: float | None) -> None:
        delay, error = self._delay(timeout)
        if delay:
            await asyncio.sleep(delay)
        if error is not None:
            raise error

    @chat_method
    def chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> LLMReply:
        timeout = self._timeout(options)
        reply = self._reply(prompt, model, attachments, options)
        self._sleep(timeout)
        return reply

    @achat_method
    async def achat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> LLMReply:
        timeout = self._timeout(options)
        reply = self._reply(prompt, model, attachments, options)
        await self._asleep(timeout)
        return reply

    @stream_method
    def stream_chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> ChatStream:
        timeout = self._timeout(options)
        reply = self._reply(prompt, model, attachments, options)  # validate eagerly: errors raise at the call

        def gen() -> Iterator[str]:
            self._sleep(timeout)
            yield from _split(reply.text)
            return reply

        return ChatStream(gen())

    @astream_method
    def astream_chat(
        self, prompt: str, *, model: str | None = None, attachments: Sequence[Attachment] | None = None, **options: Any
    ) -> AsyncChatStream:
        timeout = self._timeout(options)
        reply = self._reply(prompt, model, attachments, options)

        async def agen() -> AsyncIterator[str | LLMReply]:
            await self._asleep(timeout)
            for chunk in _split(reply.text):
                yield chunk
            yield reply

        return AsyncChatStream(agen())

    def __repr__(self) -> str:
        return f"MockProvider(model_default={self.model_default!r})"
