"""A stream closed or cancelled early releases its upstream connection NOW, not at garbage collection.

Proved from the server's side: the fake server records when its write to the client fails, i.e. when the
client's socket is really gone. The streams stay referenced by the test while it waits, so garbage collection
cannot be what closed them. Then: many closed streams leave no sockets, file descriptors or threads behind.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from providers import RetryPolicy, get_llm_provider

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
MODELS = ("openai/endless-0.1", "ollama_chat/endless-0.1", "openai/endless-0.1+litellm")
#: The server notices at its next write (one every 0.1 s); the rest is scheduling on a loaded machine.
NOTICE_S = 2.0


def provider(fake_llm, model: str):
    """``+litellm``: through ``litellm.completion`` (not the openai-SDK fast path)."""
    base = fake_llm.ollama_base if model.startswith("ollama") else fake_llm.openai_base
    model, _, route = model.partition("+")
    return get_llm_provider("litellm", model_default=model, api_base=base, api_key="sk-test-key-123456",
                            retry=FAST, timeout=60, fast_path=route != "litellm")


def scenario(model: str) -> str:
    return model.partition("+")[0].split("/")[1]


@pytest.fixture(scope="module")
def warm(_fake_llm_server):
    for llm in (get_llm_provider("litellm", api_base=_fake_llm_server.openai_base, api_key="sk-warm-000000"),
                get_llm_provider("litellm", model_default="ollama_chat/qwen2.5:0.5b",
                                 api_base=_fake_llm_server.ollama_base)):
        "".join(llm.stream_chat("warm up"))

        async def consume():
            return [c async for c in llm.astream_chat("warm up")]

        asyncio.run(consume())


def assert_released(fake_llm, closed_at: float, scenario: str) -> None:
    assert fake_llm.wait_for_disconnects(1, 10, scenario), f"the server never saw the client go: {fake_llm.disconnects}"
    d = next(d for d in fake_llm.disconnects if d["scenario"] == scenario)
    assert d["at"] - closed_at <= NOTICE_S, f"the upstream was released {d['at'] - closed_at:.2f}s after close"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("how", ["close", "with", "break+close"])
def test_closing_a_sync_stream_closes_its_upstream_connection_at_once(warm, fake_llm, model, how):
    stream = provider(fake_llm, model).stream_chat("go on")
    if how == "close":
        chunks = [next(stream), next(stream)]
        stream.close()
    elif how == "with":
        with stream:
            chunks = [next(stream), next(stream)]
    else:
        chunks = []
        for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == 2:
                break
        stream.close()
    closed_at = time.monotonic()
    assert chunks == ["echo:", " more"]
    assert_released(fake_llm, closed_at, scenario(model))
    assert not stream.done  # still referenced: the close did it, not the garbage collector


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("how", ["aclose", "async with", "cancel", "cancel before the first chunk"])
def test_closing_or_cancelling_an_async_stream_closes_its_upstream_connection_at_once(warm, fake_llm, model, how):
    if how == "cancel before the first chunk":
        model = model.replace("endless", "drip")  # one byte every 0.1 s: no chunk for minutes
    llm = provider(fake_llm, model)

    async def main():
        stream = llm.astream_chat("go on")
        chunks: list[str] = []
        if how == "aclose":
            chunks += [await stream.__anext__(), await stream.__anext__()]
            await stream.aclose()
        elif how == "async with":
            async with stream:
                chunks += [await stream.__anext__(), await stream.__anext__()]
        else:
            two = asyncio.Event()

            async def consume():
                async for chunk in stream:
                    chunks.append(chunk)
                    if len(chunks) == 2:
                        two.set()

            task = asyncio.create_task(consume())
            if how == "cancel":
                await two.wait()
            else:
                await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        closed_at = time.monotonic()
        # Wait off the loop: the release must not depend on the loop doing anything more for this stream.
        released = await asyncio.to_thread(fake_llm.wait_for_disconnects, 1, 10, scenario(model))
        return stream, chunks, closed_at, released

    stream, chunks, closed_at, released = asyncio.run(main())
    assert released
    assert chunks == ([] if how.endswith("first chunk") else ["echo:", " more"])
    assert_released(fake_llm, closed_at, scenario(model))
    assert not stream.done


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_closed_streams_leave_no_sockets_fds_or_threads_behind(warm, fake_llm):
    """Thirty early-closed streams (sync and async; OpenAI on both routes, Ollama): the server saw every client go, and
    this process's fds, threads and the server's open connections are back where they started."""
    llms = [provider(fake_llm, m) for m in MODELS]

    def cycle() -> None:
        for llm in llms:
            stream = llm.stream_chat("go on")
            next(stream), next(stream)
            stream.close()

            async def early_aclose():
                s = llm.astream_chat("go on")
                await s.__anext__()
                await s.aclose()

            asyncio.run(early_aclose())

    cycle()  # warm: executor threads, client caches, the first connections
    assert fake_llm.wait_for_disconnects(2 * len(llms), 10, "endless-0.1")
    fake_llm.reset()
    fds, threads, conns = _fds(), threading.active_count(), fake_llm.open_connections
    for _ in range(5):
        cycle()
    assert fake_llm.wait_for_disconnects(5 * 2 * len(llms), 10, "endless-0.1"), fake_llm.disconnects
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        _fds() > fds or threading.active_count() > threads or fake_llm.open_connections > conns
    ):
        time.sleep(0.05)
    assert _fds() <= fds, f"fds {fds} -> {_fds()}"
    assert threading.active_count() <= threads, [t.name for t in threading.enumerate()]
    assert fake_llm.open_connections <= conns
