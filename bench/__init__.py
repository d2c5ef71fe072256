"""Benchmarks of every layer of theory-modal, side by side with what it wraps.

Run ``python -m bench`` (or ``make bench``); ``python -m bench --quick`` is the CI smoke of the harness.
Every performance claim of the project comes from here, as ratios of medians measured interleaved
(A/B/A/B, after a warm-up) in one run on one machine. See ``bench/README.md`` for what each figure means.
"""

__all__ = ["BENCHMARKS"]

#: Benchmark names, in the order they run (``--only`` takes a comma-separated subset).
BENCHMARKS = (
    "litellm_chat",
    "litellm_stream",
    "mock_chat",
    "local_adapter",
    "async_throughput",
    "cold_start",
    "emulator",
    "fast_stream",
    "fast_chat",
    "async_streams",
)
