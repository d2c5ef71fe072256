"""Shared machinery: interleaved timing, statistics and the result record of one benchmark."""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Settings",
    "Result",
    "Figure",
    "Check",
    "summarize",
    "percentile",
    "interleave",
    "interleave_self_timed",
    "orders",
    "NS",
]

#: Nanoseconds per unit.
NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


@dataclass
class Settings:
    """Sizes of every benchmark; ``Settings.quick()`` is the CI smoke (a few iterations each)."""

    quick: bool = False
    warmup: int = 20
    chat_n: int = 500  # items 1 and 4, calls per side
    stream_n: int = 200  # item 2, streams per side
    mock_batches: int = 200  # item 3
    mock_batch_size: int = 200
    async_requests: int = 1000  # item 5
    async_concurrency: int = 100
    async_rounds: int = 5
    async_latency_ms: float = 50.0
    cold_n: int = 10  # item 6, fresh processes per variant
    emu_remote_n: int = 100  # item 7
    emu_map_size: int = 200
    emu_map_rounds: int = 3
    emu_stream_words: int = 200  # item 7, chunks of the mock stream through the emulator
    latency_ms: float = 0.0  # response latency of the server for items 1, 2 and 4
    chunks: int = 8  # content chunks per streamed reply
    fast_chunks: int = 400  # item 8, content chunks per streamed reply
    fast_stream_n: int = 40  # item 8, streams per side
    fast_chat_n: int = 300  # item 9, calls per side
    async_streams: int = 32  # item 10, concurrent streams
    async_stream_chunks: int = 200  # item 10, chunks per stream
    async_stream_rounds: int = 6  # item 10, rounds per side

    @classmethod
    def quick_settings(cls) -> Settings:
        return cls(
            quick=True,
            warmup=3,
            chat_n=25,
            stream_n=10,
            mock_batches=20,
            mock_batch_size=50,
            async_requests=100,
            async_concurrency=20,
            async_rounds=1,
            cold_n=1,
            emu_remote_n=5,
            emu_map_size=20,
            emu_map_rounds=1,
            emu_stream_words=20,
            fast_chunks=40,
            fast_stream_n=4,
            fast_chat_n=20,
            async_streams=4,
            async_stream_chunks=20,
            async_stream_rounds=2,
        )


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100] (numpy's default method)."""
    if not values:
        return math.nan
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Figure:
    """One measured series: ``samples`` are in ``unit`` (``us``, ``ms``, ``s`` or ``rps``)."""

    label: str
    unit: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def p90(self) -> float:
        return percentile(self.samples, 90)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "n": len(self.samples),
            f"median_{self.unit}": _round(self.median),
            f"p90_{self.unit}": _round(self.p90),
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Check:
    """A target: ``value`` compared with ``limit`` by ``op`` (``<=``, ``>=`` or ``==``)."""

    name: str
    value: Any
    op: str
    limit: Any
    unit: str = ""
    is_ratio: bool = True  # False for absolute targets (microseconds, milliseconds, yes/no)

    @property
    def met(self) -> bool:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        if self.op == "<=":
            return self.value <= self.limit
        if self.op == ">=":
            return self.value >= self.limit
        return self.value == self.limit

    @property
    def target(self) -> str:
        return f"{self.op} {self.limit}{(' ' + self.unit) if self.unit else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": _round(self.value), "target": self.target, "met": self.met,
                "kind": "ratio" if self.is_ratio else "absolute"}


@dataclass
class Result:
    """Everything one benchmark reports. ``ratio``/``target``/``met`` in JSON come from the first check."""

    name: str
    item: int
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0

    def add(self, key: str, figure: Figure) -> Figure:
        self.figures[key] = figure
        return figure

    def ratio(self, a: str, b: str) -> float:
        """Ratio of medians, figure ``a`` over figure ``b``."""
        return self.figures[a].median / self.figures[b].median

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item": self.item, "title": self.title}
        if self.skipped is not None:
            out["skipped"] = self.skipped
            return out | {"seconds": round(self.seconds, 1)}
        out["figures"] = {k: f.to_dict() for k, f in self.figures.items()}
        # Headline: the first ratio target (None when every target is absolute), the first target, and
        # whether *every* target is met; all targets are under "checks".
        ratios = [c for c in self.checks if c.is_ratio]
        out["ratio"] = _round(ratios[0].value) if ratios else None
        out["target"] = (ratios[0] if ratios else self.checks[0]).target if self.checks else None
        out["met"] = all(c.met for c in self.checks) if self.checks else None
        out["checks"] = [c.to_dict() for c in self.checks]
        if self.info:
            out["info"] = self.info
        out["seconds"] = round(self.seconds, 1)
        return out


def _round(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return float(f"{value:.4g}") if abs(value) < 1000 else round(value, 1)
    return value


def summarize(samples_ns: list[int], unit: str) -> list[float]:
    return [s / NS[unit] for s in samples_ns]


def orders(names: list[str], n: int, seed: int = 20261124) -> Iterator[list[str]]:
    """The call order of each round. Two series: A,B then B,A (ABBA), so each side goes first, and follows
    each side, equally often. More series: a seeded shuffle per round, balanced in expectation. This matters:
    LiteLLM defers logging work to a background thread after each call, and that work lands on whatever runs
    next, so a fixed order would bill one side for the other's leftovers."""
    rng = random.Random(seed)
    for i in range(n):
        if len(names) <= 2:
            yield names if i % 2 == 0 else names[::-1]
        else:
            order = list(names)
            rng.shuffle(order)
            yield order


def interleave(
    fns: Mapping[str, Callable[[], Any]], n: int, warmup: int, *, clock: Callable[[], int] = time.perf_counter_ns
) -> dict[str, list[int]]:
    """Call each function ``n`` times, interleaved (see :func:`orders`), after ``warmup`` untimed rounds.
    Returns nanoseconds per call per name."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    gc.collect()
    samples: dict[str, list[int]] = {name: [] for name in names}
    for order in orders(names, n):
        for name in order:
            fn = fns[name]
            t0 = clock()
            fn()
            samples[name].append(clock() - t0)
    return samples


def interleave_self_timed(
    fns: Mapping[str, Callable[[], Mapping[str, int]]], n: int, warmup: int
) -> dict[str, dict[str, list[int]]]:
    """Like :func:`interleave` for functions that time themselves and return ``{metric: nanoseconds}``."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    gc.collect()
    samples: dict[str, dict[str, list[int]]] = {name: {} for name in names}
    for order in orders(names, n):
        for name in order:
            for metric, value in fns[name]().items():
                samples[name].setdefault(metric, []).append(value)
    return samples
