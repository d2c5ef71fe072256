"""Stream objects: iterate ``str`` chunks; once exhausted, ``.reply`` holds the final LLMReply with real usage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from providers.contract import LLMReply

__all__ = ["ChatStream", "AsyncChatStream"]

_NOT_DONE = "the stream has not finished: iterate it to the end before reading .reply"


class _StreamState:
    """What both stream kinds expose: the text so far and, once finished, the final reply."""

    __slots__ = ("_reply", "_parts")

    def __init__(self) -> None:
        self._reply: LLMReply | None = None
        self._parts: list[str] = []

    @property
    def done(self) -> bool:
        return self._reply is not None

    @property
    def text(self) -> str:
        """The text received so far (all of it, once done)."""
        return "".join(self._parts)

    @property
    def reply(self) -> LLMReply:
        if self._reply is None:
            raise RuntimeError(_NOT_DONE)
        return self._reply


class ChatStream(_StreamState):
    """Wraps a generator that yields ``str`` chunks and *returns* the final :class:`LLMReply`.

    >>> stream = llm.stream_chat("Hello")
    >>> text = "".join(stream)
    >>> stream.reply.usage["tokens_out"]
    """

    __slots__ = ("_gen",)

    def __init__(self, gen: Iterator[str]) -> None:
        super().__init__()
        self._gen = gen

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        try:
            chunk = next(self._gen)
        except StopIteration as stop:
            if self._reply is None:
                self._reply = stop.value
            raise
        self._parts.append(chunk)
        return chunk

    def close(self) -> None:
        """Stop early: the upstream HTTP connection is closed now, not at garbage collection (leaving a ``with``
        block does the same). Call it from the thread that iterates the stream."""
        self._gen.close()  # type: ignore[attr-defined]

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncChatStream(_StreamState):
    """Async twin of :class:`ChatStream`. The async generator cannot *return* a value, so it yields the final
    :class:`LLMReply` as its last item; this wrapper keeps that out of the chunks and exposes it as ``.reply``."""

    __slots__ = ("_agen",)

    def __init__(self, agen: AsyncIterator[str | LLMReply]) -> None:
        super().__init__()
        self._agen = agen

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> str:
        item = await self._agen.__anext__()
        if isinstance(item, LLMReply):
            self._reply = item
            raise StopAsyncIteration
        self._parts.append(item)
        return item

    async def aclose(self) -> None:
        """Stop early: the upstream HTTP connection is closed now (leaving ``async with`` does the same, and so
        does cancelling the task while it awaits the next chunk)."""
        await self._agen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
