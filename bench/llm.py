"""Items 1-5: our layers against what they wrap, in this process, against the loopback server.

Fairness rule: the raw LiteLLM side sends exactly the keyword arguments our provider sends. They are not written
out by hand: :func:`capture` records the kwargs of one real provider call (model, messages, api_base, api_key,
timeout, max_retries=0, and for streams ``stream=True, stream_options={"include_usage": True}``), and the raw
side replays them with a fresh ``messages`` list, so the ratio measures our layer only.

Items 1, 2 and 5 measure the LiteLLM path (``fast_path=False``): what stays on LiteLLM (every provider but the
OpenAI protocol) must cost at most 3-5 % over raw LiteLLM. The fast path is measured against the openai SDK in
:mod:`bench.fast` (items 8-10).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from bench.core import Check, Figure, Result, Settings, interleave, interleave_self_timed, summarize
from bench.server import ServerProcess

__all__ = ["LLMContext", "bench_litellm_chat", "bench_litellm_stream", "bench_mock_chat", "bench_local_adapter",
           "bench_async_throughput", "PROMPT", "MODEL", "KEY"]

MODEL = "openai/gpt-4o-mini"
KEY = "sk-bench-loopback-0000"  # the fake server accepts any key; litellm's openai route needs one
PROMPT = "Summarise what this benchmark harness measures in one short sentence, please"


class LLMContext:
    """Lazily imports litellm (through our own loader, so both sides share one configured module) and starts
    the shared loopback server (no latency, ``chunks`` content chunks per stream)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: ServerProcess | None = None
        self._litellm: Any = None

    @property
    def litellm(self) -> Any:
        if self._litellm is None:
            from providers.litellm_provider import load_litellm

            self._litellm = load_litellm()
        return self._litellm

    @property
    def server(self) -> ServerProcess:
        if self._server is None:
            self._server = ServerProcess(latency_ms=self.settings.latency_ms, chunks=self.settings.chunks).start()
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@contextlib.contextmanager
def capture(module: Any, attr: str) -> Iterator[list[dict[str, Any]]]:
    """Record the kwargs of every ``module.<attr>(...)`` call made inside the block (calls still go through)."""
    real = getattr(module, attr)
    seen: list[dict[str, Any]] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(kwargs))
        return real(*args, **kwargs)

    setattr(module, attr, spy)
    try:
        yield seen
    finally:
        setattr(module, attr, real)


def _replayable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The captured kwargs minus ``messages`` (rebuilt per call, as a caller would); checked to be what we expect."""
    messages = kwargs.get("messages")
    if messages != [{"role": "user", "content": PROMPT}]:
        raise AssertionError(f"the provider sent unexpected messages: {messages!r}")
    return {k: v for k, v in kwargs.items() if k != "messages"}


def _shown(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<set>" if k == "api_key" else v) for k, v in kwargs.items()}


def _usage_of(resp: Any) -> tuple[int, int]:
    u = resp.usage
    return int(u.prompt_tokens or 0), int(u.completion_tokens or 0)


@contextlib.contextmanager
def _stubbed(module: Any, attr: str, fn: Any) -> Iterator[None]:
    real = getattr(module, attr)
    setattr(module, attr, fn)
    try:
        yield
    finally:
        setattr(module, attr, real)


def _layer_cost(res: Result, ours: Any, raw: Any, s: Settings) -> None:
    """Our layer's own CPU, without network noise: both sides run with ``litellm.completion`` stubbed to hand
    back a response recorded from the server, in batches of 50 calls, interleaved. The difference of medians
    is what our code costs per call; compare it with the raw median above."""
    k = 50

    def batch(fn: Any) -> Any:
        return lambda: [fn() for _ in range(k)]

    samples = interleave({"ours": batch(ours), "raw": batch(raw)}, max(20, s.chat_n // 5), max(3, s.warmup // 4))
    res.add("layer_ours", Figure("provider, litellm stubbed (our layer's CPU)", "us", [x / k / 1000 for x in samples["ours"]]))
    res.add("layer_raw", Figure("raw caller code, litellm stubbed", "us", [x / k / 1000 for x in samples["raw"]]))
    res.info["layer_cost_us"] = res.figures["layer_ours"].median - res.figures["layer_raw"].median


# ---------------------------------------------------------------------------------------------- item 1
def bench_litellm_chat(ctx: LLMContext, s: Settings) -> Result:
    from providers import get_llm_provider

    litellm, srv = ctx.litellm, ctx.server
    res = Result("litellm_chat", 1, "LiteLLMProvider.chat vs raw litellm.completion (same kwargs, loopback server)")
    provider = get_llm_provider("litellm", model_default=MODEL, api_base=srv.base, api_key=KEY, fast_path=False)
    with capture(litellm, "completion") as seen:
        reply = provider.chat(PROMPT)
    kw = _replayable(seen[0])

    def raw() -> tuple[str, tuple[int, int], Any]:
        resp = litellm.completion(messages=[{"role": "user", "content": PROMPT}], **kw)
        return resp.choices[0].message.content, _usage_of(resp), resp._hidden_params.get("response_cost")

    text, usage, _ = raw()
    if (text, usage) != (reply.text, (reply.usage["tokens_in"], reply.usage["tokens_out"])):
        raise AssertionError(f"raw and provider replies differ: {text!r} {usage} vs {reply}")

    body = json.dumps({"model": MODEL.split("/", 1)[1], "messages": [{"role": "user", "content": PROMPT}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}

    def floor() -> Any:
        conn.request("POST", "/v1/chat/completions", body, headers)
        return json.loads(conn.getresponse().read())

    samples = interleave({"provider": lambda: provider.chat(PROMPT), "raw": raw, "raw_aa": raw}, s.chat_n, s.warmup)
    # The floor runs on its own: between two LiteLLM calls it would give LiteLLM's deferred background work
    # time to finish off the clock, and so flatter whichever call follows it.
    samples |= interleave({"floor": floor}, s.chat_n, s.warmup)
    conn.close()
    res.add("provider", Figure("LiteLLMProvider.chat", "ms", summarize(samples["provider"], "ms")))
    res.add("raw", Figure("litellm.completion, same kwargs", "ms", summarize(samples["raw"], "ms")))
    res.add("raw_aa", Figure("litellm.completion again (A/A noise probe)", "ms", summarize(samples["raw_aa"], "ms")))
    res.add("floor", Figure("transport floor: http.client POST + json (info)", "ms", summarize(samples["floor"], "ms")))
    res.checks.append(Check("median ratio provider / raw", res.ratio("provider", "raw"), "<=", 1.03))
    res.info["aa_ratio"] = res.ratio("raw_aa", "raw")

    recorded = litellm.completion(messages=[{"role": "user", "content": PROMPT}], **kw)
    with _stubbed(litellm, "completion", lambda **_: recorded):
        _layer_cost(res, lambda: provider.chat(PROMPT), raw, s)
    res.info["layer_cost_pct_of_raw_median"] = 100 * res.info["layer_cost_us"] / 1000 / res.figures["raw"].median
    res.info["kwargs"] = _shown(seen[0])
    res.info["overhead_ms"] = res.figures["provider"].median - res.figures["raw"].median
    res.info["server"] = srv.describe()
    return res


# ---------------------------------------------------------------------------------------------- item 2
def bench_litellm_stream(ctx: LLMContext, s: Settings) -> Result:
    from providers import get_llm_provider

    litellm, srv = ctx.litellm, ctx.server
    res = Result("litellm_stream", 2, "stream_chat vs raw litellm.completion(stream=True, include_usage); raw = litellm.completion(stream=True), same kwargs")
    provider = get_llm_provider("litellm", model_default=MODEL, api_base=srv.base, api_key=KEY, fast_path=False)
    with capture(litellm, "completion") as seen:
        stream = provider.stream_chat(PROMPT)
        ref_text = "".join(stream)
        ref_usage = (stream.reply.usage["tokens_in"], stream.reply.usage["tokens_out"])
    kw = _replayable(seen[0])
    if not (kw.get("stream") is True and kw.get("stream_options") == {"include_usage": True}):
        raise AssertionError(f"stream_chat did not send stream=True with include_usage: {kw}")
    clock = time.perf_counter_ns

    def ours() -> dict[str, int]:
        t0 = clock()
        st = provider.stream_chat(PROMPT)
        next(st)  # the first text chunk
        t1 = clock()
        for _ in st:
            pass
        st.reply.usage["tokens_out"]  # noqa: B018 - what a caller reads
        t2 = clock()
        return {"ttfc": t1 - t0, "total": t2 - t0, "_text": st.text, "_usage": (st.reply.usage["tokens_in"], st.reply.usage["tokens_out"])}  # type: ignore[dict-item]

    def raw() -> dict[str, int]:
        t0 = clock()
        t1 = 0
        parts: list[str] = []
        usage = None
        for chunk in litellm.completion(messages=[{"role": "user", "content": PROMPT}], **kw):
            u = getattr(chunk, "usage", None)
            if u is not None and getattr(u, "prompt_tokens", None) is not None:
                usage = (int(u.prompt_tokens or 0), int(u.completion_tokens or 0))
            if chunk.choices:
                piece = chunk.choices[0].delta.content
                if piece:
                    if not t1:
                        t1 = clock()
                    parts.append(piece)
        text = "".join(parts)
        t2 = clock()
        return {"ttfc": t1 - t0, "total": t2 - t0, "_text": text, "_usage": usage}  # type: ignore[dict-item]

    for side in (ours, raw):
        out = side()
        if (out["_text"], out["_usage"]) != (ref_text, ref_usage):
            raise AssertionError(f"{side.__name__}: stream text/usage differ: {out} vs {ref_text!r} {ref_usage}")

    def strip(fn):  # noqa: ANN001, ANN202
        return lambda: {k: v for k, v in fn().items() if not k.startswith("_")}

    samples = interleave_self_timed(
        {"provider": strip(ours), "raw": strip(raw), "raw_aa": strip(raw)}, s.stream_n, s.warmup
    )
    for side, label in (("provider", "stream_chat"), ("raw", "raw stream"), ("raw_aa", "raw stream again (A/A)")):
        res.add(f"{side}_total", Figure(f"{label}: total (text + usage)", "ms", summarize(samples[side]["total"], "ms")))
    for side, label in (("provider", "stream_chat"), ("raw", "raw stream"), ("raw_aa", "raw stream again (A/A)")):
        res.add(f"{side}_ttfc", Figure(f"{label}: time to first text chunk", "ms", summarize(samples[side]["ttfc"], "ms")))
    res.checks.append(Check("median ratio provider / raw, total", res.ratio("provider_total", "raw_total"), "<=", 1.05))
    res.info["ttfc_ratio"] = res.ratio("provider_ttfc", "raw_ttfc")

    chunks = list(litellm.completion(messages=[{"role": "user", "content": PROMPT}], **kw))
    with _stubbed(litellm, "completion", lambda **_: iter(chunks)):
        _layer_cost(res, ours, raw, s)
    res.info["layer_cost_pct_of_raw_median"] = 100 * res.info["layer_cost_us"] / 1000 / res.figures["raw_total"].median
    res.info["aa_ratio_total"] = res.ratio("raw_aa_total", "raw_total")
    res.info["aa_ratio_ttfc"] = res.ratio("raw_aa_ttfc", "raw_ttfc")
    res.info["kwargs"] = _shown(seen[0])
    res.info["content_chunks"] = s.chunks
    return res


# ---------------------------------------------------------------------------------------------- item 3
def bench_mock_chat(ctx: LLMContext, s: Settings) -> Result:
    from providers import get_llm_provider

    res = Result("mock_chat", 3, "MockProvider.chat per call (in process, no I/O)")
    mock = get_llm_provider("mock")
    chat = mock.chat
    for _ in range(max(200, s.warmup * 50)):
        chat(PROMPT)
    clock = time.perf_counter_ns
    k = s.mock_batch_size
    per_call: list[float] = []
    gc.collect()
    for _ in range(s.mock_batches):
        t0 = clock()
        for _ in range(k):
            chat(PROMPT)
        per_call.append((clock() - t0) / k / 1000)
    res.add("mock", Figure(f"MockProvider.chat (mean of batches of {k} calls)", "us", per_call))
    res.checks.append(Check("median per call", res.figures["mock"].median, "<=", 20.0, "us", is_ratio=False))
    return res


# ---------------------------------------------------------------------------------------------- item 4
@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bench_local_adapter(ctx: LLMContext, s: Settings) -> Result:
    """The adapter in live mode builds its provider from the environment, so the loopback server is given the
    way a deployment would give a real one: ``OPENAI_API_BASE`` / ``OPENAI_API_KEY``. "Direct" is the very
    provider instance the adapter uses (``handlers.provider_for``), so only the adapter layer differs."""
    from theory_modal.adapters import LocalAdapter
    from theory_modal.adapters.local import _run as local_run
    from theory_modal.handlers import provider_for

    srv = ctx.server
    ctx.litellm  # noqa: B018 - import outside the timed region
    res = Result("local_adapter", 4, "LocalAdapter.run vs the provider called directly")
    adapter = LocalAdapter()
    with _env(OPENAI_API_BASE=srv.base, OPENAI_API_KEY=KEY):
        direct = provider_for("litellm", "live")
        payload = {"prompt": PROMPT, "mode": "live"}
        via = adapter.run("llm/litellm@1", payload)
        if via["text"] != direct.chat(PROMPT).text:
            raise AssertionError(f"adapter and provider replies differ: {via}")
        samples = interleave(
            {
                "adapter": lambda: adapter.run("llm/litellm@1", payload),
                "direct": lambda: direct.chat(PROMPT),
                # What the Modal function awaits, on the adapter's loop, without the function around it: splits
                # the adapter's own layers (adapter / this) from the async path + thread hop (this / direct).
                "direct_async": lambda: local_run(direct.achat(PROMPT)),
            },
            s.chat_n, s.warmup,
        )
    res.add("adapter", Figure("LocalAdapter().run('llm/litellm@1', live)", "ms", summarize(samples["adapter"], "ms")))
    res.add("direct", Figure("the same provider's .chat", "ms", summarize(samples["direct"], "ms")))
    res.add("direct_async", Figure("its .achat on the adapter's loop (info)", "ms",
                                   summarize(samples["direct_async"], "ms")))
    res.checks.append(Check("median ratio adapter / direct", res.ratio("adapter", "direct"), "<=", 1.05))
    res.info["ratio_adapter_over_achat_on_loop"] = round(res.ratio("adapter", "direct_async"), 4)
    res.info["ratio_achat_on_loop_over_chat"] = round(res.ratio("direct_async", "direct"), 4)
    _async_split(res, srv, s, local_run)

    # The adapter's own cost in absolute terms, on the mock (no I/O): information, no target.
    mock = provider_for("mock", "smoke")
    mpayload = {"prompt": PROMPT, "mode": "smoke"}
    msamples = interleave(
        {"adapter": lambda: adapter.run("llm/mock@1", mpayload), "direct": lambda: mock.chat(PROMPT)},
        s.chat_n * 10, s.warmup * 10,
    )
    res.add("mock_adapter", Figure("LocalAdapter().run('llm/mock@1') (info)", "us", summarize(msamples["adapter"], "us")))
    res.add("mock_direct", Figure("MockProvider.chat (info)", "us", summarize(msamples["direct"], "us")))
    res.info["adapter_overhead_us_on_mock"] = res.figures["mock_adapter"].median - res.figures["mock_direct"].median
    res.info["adapter_overhead_ms_on_litellm"] = res.figures["adapter"].median - res.figures["direct"].median
    return res


def _async_split(res: Result, srv: Any, s: Settings, local_run: Any) -> None:
    """Where ``achat`` on the adapter's loop loses to a sync ``chat`` (information, no target): the thread hop
    alone (an empty coroutine through the adapter's loop), and the openai SDK's own async client run there
    against its sync client on the same server (no provider code on either side)."""
    import openai

    model = MODEL.split("/", 1)[1]
    messages = [{"role": "user", "content": PROMPT}]
    sync_client = openai.OpenAI(api_key=KEY, base_url=srv.base, max_retries=0)
    async_client = openai.AsyncOpenAI(api_key=KEY, base_url=srv.base, max_retries=0)

    async def nothing() -> None:
        return None

    samples = interleave(
        {
            "hop": lambda: local_run(nothing()),
            "sdk_sync": lambda: sync_client.chat.completions.create(model=model, messages=messages),
            "sdk_async": lambda: local_run(async_client.chat.completions.create(model=model, messages=messages)),
        },
        s.chat_n, s.warmup,
    )
    sync_client.close()
    local_run(async_client.close())
    res.add("hop", Figure("an empty coroutine through the adapter's loop (info)", "us", summarize(samples["hop"], "us")))
    res.add("sdk_sync", Figure("raw openai SDK, sync client (info)", "ms", summarize(samples["sdk_sync"], "ms")))
    res.add("sdk_async", Figure("raw AsyncOpenAI on the adapter's loop (info)", "ms", summarize(samples["sdk_async"], "ms")))
    res.info["ratio_sdk_async_on_loop_over_sync"] = round(res.ratio("sdk_async", "sdk_sync"), 4)


# ---------------------------------------------------------------------------------------------- item 5
def bench_async_throughput(ctx: LLMContext, s: Settings) -> Result:
    from providers import get_llm_provider

    litellm = ctx.litellm
    res = Result(
        "async_throughput", 5,
        f"achat vs raw litellm.acompletion: {s.async_requests} requests at concurrency {s.async_concurrency}, "
        f"{s.async_latency_ms:g} ms server",
    )
    with ServerProcess(latency_ms=s.async_latency_ms, chunks=s.chunks) as srv:
        provider = get_llm_provider("litellm", model_default=MODEL, api_base=srv.base, api_key=KEY, fast_path=False)
        out = asyncio.run(_throughput(litellm, provider, s))
        res.info["server"] = srv.describe()
    res.add("provider_rps", Figure("LiteLLMProvider.achat, requests/s per round", "rps", out["provider"]["rps"]))
    res.add("raw_rps", Figure("litellm.acompletion, requests/s per round", "rps", out["raw"]["rps"]))
    res.add("provider_latency", Figure("achat, per-request latency (info)", "ms", out["provider"]["lat"]))
    res.add("raw_latency", Figure("acompletion, per-request latency (info)", "ms", out["raw"]["lat"]))
    res.checks.append(Check("median throughput ratio provider / raw", res.ratio("provider_rps", "raw_rps"), ">=", 0.95))
    res.info["ideal_rps"] = s.async_concurrency / (s.async_latency_ms / 1000)
    res.info["kwargs"] = _shown(out["kwargs"])
    res.info["rounds"] = s.async_rounds
    return res


async def _throughput(litellm: Any, provider: Any, s: Settings) -> dict[str, Any]:
    with capture(litellm, "acompletion") as seen:
        reply = await provider.achat(PROMPT)
    kw = _replayable(seen[0])
    resp = await litellm.acompletion(messages=[{"role": "user", "content": PROMPT}], **kw)
    if resp.choices[0].message.content != reply.text:
        raise AssertionError("raw and provider async replies differ")

    async def ours() -> None:
        await provider.achat(PROMPT)

    async def raw() -> None:
        r = await litellm.acompletion(messages=[{"role": "user", "content": PROMPT}], **kw)
        r.choices[0].message.content, _usage_of(r), r._hidden_params.get("response_cost")  # noqa: B018

    async def batch(call: Any, n: int) -> tuple[float, list[float]]:
        sem = asyncio.Semaphore(s.async_concurrency)
        lat: list[float] = []

        async def one() -> None:
            async with sem:
                t = time.perf_counter_ns()
                await call()
                lat.append((time.perf_counter_ns() - t) / 1e6)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0), lat

    # Warm-up: fill both sides' connection pools at full concurrency.
    for call in (ours, raw):
        await batch(call, s.async_concurrency * 2)
    out: dict[str, Any] = {"provider": {"rps": [], "lat": []}, "raw": {"rps": [], "lat": []}, "kwargs": seen[0]}
    sides = [("provider", ours), ("raw", raw)]
    for r in range(s.async_rounds):
        for name, call in sides if r % 2 == 0 else reversed(sides):
            gc.collect()
            rps, lat = await batch(call, s.async_requests)
            out[name]["rps"].append(rps)
            out[name]["lat"].extend(lat)
    return out
