"""Run one call through the fast path and through plain LiteLLM, and reduce each outcome to what must match.

An outcome is the reply (``LLMReply.to_dict()`` without ``latency_ms``) plus the streamed chunks, or the error's
class, message (ports masked), attempts, status code, ``retry_after`` and retryability; and, from the fake
server, the requests it received (path and JSON body: the request itself must be the same on both paths).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from providers import ProviderError, get_llm_provider

CALLS = ("chat", "stream_chat", "achat", "astream_chat")
_PORT = re.compile(r"127\.0\.0\.1:\d+")


@dataclass
class Outcome:
    reply: dict[str, Any] | None = None
    chunks: list[str] = field(default_factory=list)
    error: tuple[Any, ...] | None = None
    requests: list[Any] = field(default_factory=list)
    paths: dict[str, int] = field(default_factory=dict)

    def comparable(self) -> tuple[Any, ...]:
        return (self.reply, self.chunks, self.error, self.requests)


def _reply(reply: Any) -> dict[str, Any]:
    d = reply.to_dict()
    d["usage"] = {k: v for k, v in d["usage"].items() if k != "latency_ms"}
    return d


def _error(exc: ProviderError) -> tuple[Any, ...]:
    return (type(exc).__name__, _PORT.sub("127.0.0.1:<port>", exc.message), exc.attempts,
            getattr(exc, "status_code", None), getattr(exc, "retry_after", None), exc.retryable)


def run_call(call: str, llm: Any, prompt: str, **kwargs: Any) -> Outcome:
    out = Outcome()
    try:
        if call == "chat":
            out.reply = _reply(llm.chat(prompt, **kwargs))
        elif call == "achat":
            out.reply = _reply(asyncio.run(llm.achat(prompt, **kwargs)))
        elif call == "stream_chat":
            stream = llm.stream_chat(prompt, **kwargs)
            for chunk in stream:
                out.chunks.append(chunk)
            out.reply = _reply(stream.reply)
        elif call == "astream_chat":

            async def consume() -> dict[str, Any]:
                stream = llm.astream_chat(prompt, **kwargs)
                async for chunk in stream:
                    out.chunks.append(chunk)
                return _reply(stream.reply)

            out.reply = asyncio.run(consume())
        else:  # pragma: no cover
            raise AssertionError(call)
    except ProviderError as exc:
        out.error = _error(exc)
    return out


def both(call: str, server: Any, seen: Counter, *, script: tuple[str, ...] = (), prompt: str,
         provider_kw: dict[str, Any], call_kw: dict[str, Any] | None = None) -> tuple[Outcome, Outcome]:
    """(fast, litellm) outcomes of the same call; the server is reset and re-scripted before each side, and
    ``seen`` (the ``paths`` fixture) records which path each side took."""
    outs = []
    for fast in (True, False):
        server.reset()
        if script:
            server.script(*script)
        seen.clear()
        llm = get_llm_provider("litellm", fast_path=fast, **provider_kw)
        out = run_call(call, llm, prompt, **(call_kw or {}))
        out.requests = [(r["path"], r["body"]) for r in server.requests]
        out.paths = dict(seen)
        outs.append(out)
    server.reset()
    return outs[0], outs[1]


def assert_same(fast: Outcome, lite: Outcome, *, expect_fast: bool = True) -> None:
    """Identical outcomes, and each side really took its path (a fast side that silently fell back to LiteLLM
    would make the comparison prove nothing)."""
    assert lite.paths.get("fast", 0) == 0, lite.paths
    if expect_fast:
        assert fast.paths.get("fast", 0) >= 1 and fast.paths.get("litellm", 0) == 0, fast.paths
    else:
        assert fast.paths.get("fast", 0) == 0, fast.paths
    assert fast.error == lite.error
    assert fast.reply == lite.reply
    assert fast.chunks == lite.chunks
    assert fast.requests == lite.requests
