"""Items 8-10: the fast path (``providers.openai_fast``) against the raw openai SDK on the same loopback server.

The raw side is what a caller of the SDK writes: ``client.chat.completions.create(...)`` on one reused client
(``max_retries=0``), reading the text (every chunk of a stream) and the usage. Our side is the provider's public
call, with the fast path on (the default for ``openai/`` models). The LiteLLM path (``fast_path=False``) and raw
``litellm.completion`` run in the same rounds as info, so the gain is visible next to the target.

* 8 ``fast_stream``: per streamed chunk, a ``--fast-chunks`` (400) chunk reply: total time of the stream / chunks.
* 9 ``fast_chat``: per non-streamed call.
* 10 ``async_streams``: 32 concurrent ``astream_chat`` streams of 200 chunks in one event loop vs ``AsyncOpenAI``
  doing the same; chunks/s per round, sides alternating.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from bench.core import Check, Figure, Result, Settings, interleave, interleave_self_timed, summarize
from bench.server import ServerProcess

__all__ = ["bench_fast_stream", "bench_fast_chat", "bench_async_streams"]

MODEL = "openai/gpt-4o-mini"
BARE = "gpt-4o-mini"
KEY = "sk-bench-loopback-0000"
#: Long enough that the fake server's echo has at least 400 characters, so every one of the requested chunks
#: carries text (it splits the reply into exactly ``--chunks`` pieces; shorter replies leave pieces empty).
PROMPT = " ".join(["Summarise what this benchmark harness measures in one short sentence, please."] * 6)


def _messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT}]


def _providers(base: str) -> tuple[Any, Any]:
    from providers import get_llm_provider

    fast = get_llm_provider("litellm", model_default=MODEL, api_base=base, api_key=KEY)
    lite = get_llm_provider("litellm", model_default=MODEL, api_base=base, api_key=KEY, fast_path=False)
    return fast, lite


def _uses_fast_path(provider: Any) -> bool:
    """Proof that the measured provider really takes the fast path (else the figure would be LiteLLM's): one
    call, with the fast backend's ``completion`` counted."""
    from providers import openai_fast

    real = openai_fast.FastBackend.completion
    seen: list[int] = []

    def counted(self: Any, **kwargs: Any) -> Any:
        seen.append(1)
        return real(self, **kwargs)

    openai_fast.FastBackend.completion = counted  # type: ignore[method-assign]
    try:
        provider.chat(PROMPT)
    finally:
        openai_fast.FastBackend.completion = real  # type: ignore[method-assign]
    return bool(seen)


# ---------------------------------------------------------------------------------------------- item 8
def bench_fast_stream(ctx: Any, s: Settings) -> Result:
    import openai

    litellm = ctx.litellm
    n = s.fast_chunks
    res = Result("fast_stream", 8, f"stream_chat (fast path) vs raw openai SDK, per chunk of a {n}-chunk stream")
    with ServerProcess(chunks=n) as srv:
        fast, lite = _providers(srv.base)
        if not _uses_fast_path(fast):
            raise AssertionError("the provider did not take the fast path for openai/gpt-4o-mini")
        client = openai.OpenAI(api_key=KEY, base_url=srv.base, max_retries=0)
        clock, cpu = time.perf_counter_ns, time.process_time_ns

        def ours(p: Any) -> Any:
            def run() -> dict[str, Any]:
                t0, c0 = clock(), cpu()
                st = p.stream_chat(PROMPT)
                for _ in st:
                    pass
                st.reply.usage["tokens_out"]  # noqa: B018
                return {"total": clock() - t0, "cpu": cpu() - c0, "_text": st.text}
            return run

        def sdk() -> dict[str, Any]:
            t0, c0 = clock(), cpu()
            parts, usage = [], None
            for c in client.chat.completions.create(model=BARE, messages=_messages(), stream=True,
                                                    stream_options={"include_usage": True}):
                if c.usage is not None:
                    usage = c.usage.completion_tokens
                if c.choices and c.choices[0].delta.content:
                    parts.append(c.choices[0].delta.content)
            text = "".join(parts)
            assert usage is not None
            return {"total": clock() - t0, "cpu": cpu() - c0, "_text": text}

        def raw_litellm() -> dict[str, Any]:
            t0, c0 = clock(), cpu()
            parts = []
            for c in litellm.completion(model=MODEL, messages=_messages(), api_base=srv.base, api_key=KEY,
                                        timeout=60.0, max_retries=0, stream=True,
                                        stream_options={"include_usage": True}):
                if c.choices and c.choices[0].delta.content:
                    parts.append(c.choices[0].delta.content)
            return {"total": clock() - t0, "cpu": cpu() - c0, "_text": "".join(parts)}

        sides = {"fast": ours(fast), "sdk": sdk, "sdk_aa": sdk, "litellm_path": ours(lite), "raw_litellm": raw_litellm}
        texts = {name: fn()["_text"] for name, fn in sides.items()}
        if len(set(texts.values())) != 1:
            raise AssertionError(f"the sides streamed different texts: {texts}")
        got = sum(1 for _ in fast.stream_chat(PROMPT))
        if got != n:
            raise AssertionError(f"the stream delivered {got} text chunks, expected {n}: lengthen PROMPT")

        def strip(fn: Any) -> Any:
            return lambda: {k: v for k, v in fn().items() if not k.startswith("_")}

        samples = interleave_self_timed({k: strip(v) for k, v in sides.items()}, s.fast_stream_n, min(s.warmup, 5))
    labels = {"fast": "stream_chat, fast path", "sdk": "raw openai SDK stream", "sdk_aa": "raw openai SDK again (A/A)",
              "litellm_path": "stream_chat, LiteLLM path (info)", "raw_litellm": "raw litellm.completion stream (info)"}
    for side, label in labels.items():
        res.add(side, Figure(f"{label}: per chunk", "us", [x / n / 1000 for x in samples[side]["total"]]))
    for side in ("fast", "sdk"):
        res.add(f"{side}_cpu", Figure(f"{labels[side]}: CPU per chunk, all threads (info)", "us",
                                      [x / n / 1000 for x in samples[side]["cpu"]]))
    res.checks.append(Check("median per-chunk ratio stream_chat (fast) / raw openai SDK", res.ratio("fast", "sdk"),
                            "<=", 1.5))
    res.info["aa_ratio"] = res.ratio("sdk_aa", "sdk")
    res.info["litellm_path_over_sdk"] = res.ratio("litellm_path", "sdk")
    res.info["raw_litellm_over_sdk"] = res.ratio("raw_litellm", "sdk")
    res.info["cpu_ratio_fast_over_sdk"] = res.ratio("fast_cpu", "sdk_cpu")
    res.info["content_chunks"] = n
    return res


# ---------------------------------------------------------------------------------------------- item 9
def bench_fast_chat(ctx: Any, s: Settings) -> Result:
    import openai

    ctx.litellm  # noqa: B018 - imported outside the timed region
    res = Result("fast_chat", 9, "chat (fast path) vs raw openai SDK, per non-streamed call")
    with ServerProcess(chunks=s.chunks) as srv:
        fast, lite = _providers(srv.base)
        if not _uses_fast_path(fast):
            raise AssertionError("the provider did not take the fast path for openai/gpt-4o-mini")
        client = openai.OpenAI(api_key=KEY, base_url=srv.base, max_retries=0)

        def sdk() -> Any:
            r = client.chat.completions.create(model=BARE, messages=_messages())
            return r.choices[0].message.content, r.usage.prompt_tokens, r.usage.completion_tokens

        if sdk()[0] != fast.chat(PROMPT).text:
            raise AssertionError("fast path and SDK replies differ")
        samples = interleave({"fast": lambda: fast.chat(PROMPT), "sdk": sdk, "sdk_aa": sdk,
                              "litellm_path": lambda: lite.chat(PROMPT)}, s.fast_chat_n, s.warmup)
    res.add("fast", Figure("LiteLLMProvider.chat, fast path", "ms", summarize(samples["fast"], "ms")))
    res.add("sdk", Figure("raw openai SDK chat.completions.create", "ms", summarize(samples["sdk"], "ms")))
    res.add("sdk_aa", Figure("raw openai SDK again (A/A)", "ms", summarize(samples["sdk_aa"], "ms")))
    res.add("litellm_path", Figure("LiteLLMProvider.chat, LiteLLM path (info)", "ms",
                                   summarize(samples["litellm_path"], "ms")))
    res.checks.append(Check("median ratio chat (fast) / raw openai SDK", res.ratio("fast", "sdk"), "<=", 1.5))
    res.info["aa_ratio"] = res.ratio("sdk_aa", "sdk")
    res.info["litellm_path_over_sdk"] = res.ratio("litellm_path", "sdk")
    return res


# ---------------------------------------------------------------------------------------------- item 10
def bench_async_streams(ctx: Any, s: Settings) -> Result:
    ctx.litellm  # noqa: B018
    k, n = s.async_streams, s.async_stream_chunks
    res = Result("async_streams", 10, f"{k} concurrent astream_chat streams of {n} chunks vs AsyncOpenAI, one loop")
    with ServerProcess(chunks=n) as srv:
        fast, lite = _providers(srv.base)
        if not _uses_fast_path(fast):
            raise AssertionError("the provider did not take the fast path for openai/gpt-4o-mini")
        out = asyncio.run(_streams(fast, lite, srv.base, s))
    res.add("fast", Figure("astream_chat, fast path: chunks/s per round", "cps", out["fast"]))
    res.add("sdk", Figure("AsyncOpenAI streams: chunks/s per round", "cps", out["sdk"]))
    res.add("litellm_path", Figure("astream_chat, LiteLLM path: chunks/s (info)", "cps", out["litellm_path"]))
    res.checks.append(Check("median chunks/s ratio astream_chat (fast) / AsyncOpenAI", res.ratio("fast", "sdk"),
                            ">=", 0.7))
    res.info["litellm_path_over_sdk"] = res.ratio("litellm_path", "sdk")
    res.info["streams"], res.info["chunks_per_stream"], res.info["rounds"] = k, n, s.async_stream_rounds
    return res


async def _streams(fast: Any, lite: Any, base: str, s: Settings) -> dict[str, list[float]]:
    import openai

    client = openai.AsyncOpenAI(api_key=KEY, base_url=base, max_retries=0)
    k, n = s.async_streams, s.async_stream_chunks

    async def sdk_one() -> int:
        got = 0
        stream = await client.chat.completions.create(model=BARE, messages=_messages(), stream=True,
                                                      stream_options={"include_usage": True})
        async for c in stream:
            if c.choices and c.choices[0].delta.content:
                got += 1
        return got

    def ours(p: Any) -> Any:
        async def one() -> int:
            got = 0
            st = p.astream_chat(PROMPT)
            async for _ in st:
                got += 1
            st.reply  # noqa: B018
            return got
        return one

    sides = {"fast": ours(fast), "sdk": sdk_one, "litellm_path": ours(lite)}

    async def round_of(one: Any) -> float:
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(one() for _ in range(k)))
        elapsed = time.perf_counter() - t0
        if counts != [n] * k:
            raise AssertionError(f"streams delivered {set(counts)} chunks, expected {n}")
        return k * n / elapsed

    for one in sides.values():  # warm-up: fill the pools at full concurrency
        await round_of(one)
    out: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(s.async_stream_rounds):
        for name in names if r % 2 == 0 else reversed(names):
            if name == "litellm_path" and r >= 2:
                continue  # info only, and slow: two rounds are enough
            gc.collect()
            out[name].append(await round_of(sides[name]))
    await client.close()
    return out
