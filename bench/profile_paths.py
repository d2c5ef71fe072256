"""``python -m bench.profile_paths [--chunks 400] [--streams 12] [--calls 150]``: where the time of one streamed
chunk and of one non-streamed call goes, per path, measured with cProfile against the loopback server.

It prints, for each path (raw openai SDK, LiteLLM as is, LiteLLM with ``disable_streaming_logging``, our fast
path), the CPU per chunk / per call of *all threads* of this process (``time.process_time``, so LiteLLM's
logging threads are charged), and the top functions by own time grouped by package. A dev tool for
``bench/README.md``'s "where the time goes"; not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import time
from collections import Counter
from typing import Any, Callable

from bench.server import ServerProcess

MODEL = "openai/gpt-4o-mini"
KEY = "sk-profile-loopback-0000"
MESSAGES = [{"role": "user", "content": "profile me"}]


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/providers/" in filename:
        return "providers (ours)"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins/C"
    return "stdlib"


def _by_package(prof: cProfile.Profile) -> Counter:
    stats = pstats.Stats(prof, stream=io.StringIO())
    out: Counter = Counter()
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        out[_package(filename)] += tottime
    return out


def _top(prof: cProfile.Profile, n: int) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(n)
    return s.getvalue()


def _measure(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median wall and all-threads CPU seconds per repetition (5 rounds)."""
    walls, cpus = [], []
    for _ in range(5):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(reps):
            fn()
        time.sleep(0.2)  # let LiteLLM's deferred logging threads finish, inside the CPU window
        cpus.append((time.process_time() - c0) / reps)
        walls.append((time.perf_counter() - t0 - 0.2) / reps)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_paths", description=__doc__)
    ap.add_argument("--chunks", type=int, default=400)
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--calls", type=int, default=150)
    ap.add_argument("--top", type=int, default=0, help="also print the top N functions of each profile")
    args = ap.parse_args(argv)

    import openai

    from providers import get_llm_provider
    from providers.litellm_provider import load_litellm

    litellm = load_litellm()
    with ServerProcess(chunks=args.chunks) as srv:
        sdk = openai.OpenAI(api_key=KEY, base_url=srv.base, max_retries=0)
        fast = get_llm_provider("litellm", model_default=MODEL, api_base=srv.base, api_key=KEY)
        lite = get_llm_provider("litellm", model_default=MODEL, api_base=srv.base, api_key=KEY, fast_path=False)

        def sdk_stream() -> None:
            for c in sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}):
                if c.choices:
                    c.choices[0].delta.content  # noqa: B018

        def sdk_chat() -> None:
            sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content  # noqa: B018

        def stream(p: Any) -> Callable[[], None]:
            return lambda: "".join(p.stream_chat("profile me"))

        def chat(p: Any) -> Callable[[], None]:
            return lambda: p.chat("profile me")

        def quiet(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                litellm.disable_streaming_logging = True
                try:
                    fn()
                finally:
                    litellm.disable_streaming_logging = False
            return run

        streams = {"openai SDK": sdk_stream, "LiteLLM path (stream_chat)": stream(lite),
                   "LiteLLM path, disable_streaming_logging": quiet(stream(lite)),
                   "fast path (stream_chat)": stream(fast)}
        calls = {"openai SDK": sdk_chat, "LiteLLM path (chat)": chat(lite), "fast path (chat)": chat(fast)}
        for fn in list(streams.values()) + list(calls.values()):
            fn()  # warm-up
        print(f"# per streamed chunk ({args.chunks}-chunk replies, {args.streams} streams x 5 rounds)")
        base = None
        for name, fn in streams.items():
            wall, cpu = _measure(fn, args.streams)
            base = base or cpu
            print(f"{name:<45} wall {wall / args.chunks * 1e6:8.0f} us   cpu {cpu / args.chunks * 1e6:8.0f} us"
                  f"   cpu x SDK {cpu / base:5.2f}")
        print(f"\n# per non-streamed call ({args.calls} calls x 5 rounds)")
        base = None
        for name, fn in calls.items():
            wall, cpu = _measure(fn, args.calls)
            base = base or cpu
            print(f"{name:<45} wall {wall * 1e6:8.0f} us   cpu {cpu * 1e6:8.0f} us   cpu x SDK {cpu / base:5.2f}")

        print("\n# cProfile, own time by package (main thread only)")
        for label, fn, reps in [("LiteLLM stream", stream(lite), args.streams), ("fast stream", stream(fast), args.streams),
                                ("LiteLLM chat", chat(lite), args.calls), ("fast chat", chat(fast), args.calls),
                                ("SDK stream", sdk_stream, args.streams), ("SDK chat", sdk_chat, args.calls)]:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(reps):
                fn()
            prof.disable()
            pk = _by_package(prof)
            total = sum(pk.values())
            shares = ", ".join(f"{k} {v / total:.0%}" for k, v in pk.most_common(7))
            print(f"{label:<16} {total / reps * 1e3:7.2f} ms/rep under the profiler: {shares}")
            if args.top:
                print(_top(prof, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
