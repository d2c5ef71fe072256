"""What the reliability suite proves, and the record it keeps: the fault scenarios, the calls they are crossed
with, the secret sentinels, and the report that ``test_reliability_doc.py`` renders into ``docs/reliability.md``.

Tests record only what they observed and asserted; the doc is rendered from those records, so it cannot claim
more than the suite checked. Nothing here depends on timing, ports or ordering: the rendered doc is the same on
every green run.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from providers import (
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
)
from theory_modal.adapters import LocalAdapter

REF = "llm/litellm@1"
PROMPT = "one two three four five six"
REPLY = f"echo: {PROMPT}"  # the fake server's default reply

#: Direct provider calls use fast back-off; the local adapter runs the container's provider (default policy).
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)

#: Two sentinel keys: one in the environment (what a Modal Secret sets), one passed as ``api_key=``.
SENTINEL_ENV = "sk-SENTINELenv0123456789abcdef"
SENTINEL_ARG = "sk-SENTINELarg9876543210fedcba"
#: The part scanned for: catches a whole key and any partial echo of one (a truncated or sliced key).
SENTINEL_CORE = "SENTINEL"

STREAMS = ("stream_chat", "astream_chat", "adapter.stream")
CALLS = ("chat", "stream_chat", "achat", "astream_chat", "adapter.run", "adapter.stream")
CALL_TITLES = {
    "chat": "`chat`",
    "stream_chat": "`stream_chat`",
    "achat": "`achat`",
    "astream_chat": "`astream_chat`",
    "adapter.run": "local adapter `run`",
    "adapter.stream": "local adapter `stream`",
}


@dataclass(frozen=True)
class Expect:
    """One cell's expected outcome. ``attempts``: ``err.attempts`` for an error, server hits for a reply."""

    error: type[ProviderError] | None = None
    attempts: int = 1
    says: tuple[str, ...] = ()  # fragments the message must contain: what happened and what to do
    hits: int | None = None  # server hits, when not equal to attempts (0 when nothing was reached)
    mid_stream: bool = False  # failed after the first chunk reached the caller
    retry_after: float | None = None


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    expect: Expect
    model: str = "openai/gpt-4o-mini"
    script: tuple[str, ...] = ()  # fake-server scenarios queued for the first requests, then "ok"
    timeout: float | None = None  # the call's deadline; None: 5 s direct, the container's default via the adapter
    min_s: float = 0.0  # a lower time bound: proves a Retry-After wait happened
    bound: float = 2.0  # upper time bound (s) for direct calls (fast back-off)
    adapter_bound: float = 4.0  # upper time bound (s) through the local adapter (default back-off)
    streams: Expect | None = None  # a different expectation for the three streaming calls
    refused: bool = False  # point the call at a closed port
    note: str = ""

    def expect_for(self, call: str) -> Expect:
        return self.streams if self.streams is not None and call in STREAMS else self.expect

    def bound_for(self, call: str) -> float:
        return self.adapter_bound if call.startswith("adapter.") else self.bound

    @property
    def ollama(self) -> bool:
        return self.model.startswith("ollama")

    @property
    def path(self) -> str:
        return "/api/chat" if self.ollama else "/v1/chat/completions"


_UNAVAILABLE3 = dict(error=ProviderUnavailableError, attempts=3)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("429-ra1-once", "429 with `Retry-After: 1`, then OK", Expect(attempts=2), script=("error-429",),
             min_s=0.95, bound=4.0, adapter_bound=4.0, note="Retry-After honoured"),
    Scenario("429-ra60", "429 with `Retry-After: 60` (longer than we wait)",
             Expect(RateLimitError, 1, ("rate limit hit", "retry after 60s", "raise your quota"), retry_after=60),
             model="openai/error-429-ra60", adapter_bound=2.0),
    Scenario("429-no-ra", "429 without `Retry-After`, every attempt",
             Expect(RateLimitError, 3, ("rate limit hit", "Slow down", "gave up after 3 attempts")),
             model="openai/error-429-noretry"),
    Scenario("500", "500 on every attempt",
             Expect(**_UNAVAILABLE3, says=("HTTP 500", "Try again later", "gave up after 3 attempts")),
             model="openai/error-500"),
    Scenario("502-twice", "502 twice, then OK", Expect(attempts=3), script=("error-502", "error-502")),
    Scenario("503-ra1-once", "503 with `Retry-After: 1`, then OK", Expect(attempts=2), script=("error-503",),
             min_s=0.95, bound=4.0, adapter_bound=4.0, note="Retry-After honoured"),
    Scenario("refused", "connection refused",
             Expect(**_UNAVAILABLE3, hits=0, says=("OPENAI_API_KEY missing or OpenAI unreachable.",
                                                   "Could not connect to http://127.0.0.1:")),
             refused=True),
    Scenario("reset", "connection reset before the response",
             Expect(**_UNAVAILABLE3, says=("closed the connection before its reply was complete", "try again")),
             model="openai/reset"),
    Scenario("cut", "stream cut mid-way (non-streaming calls: body cut short)",
             Expect(**_UNAVAILABLE3, says=("closed the connection before its reply was complete",)),
             model="openai/cut-stream",
             streams=Expect(ProviderUnavailableError, 1, ("broke off after 1 chunk(s)", "not retried",
                                                          "call again for a full reply"), mid_stream=True)),
    Scenario("hang", "hang past the deadline (`timeout=0.3`: the whole call)",
             Expect(ProviderTimeoutError, 1, ("did not finish within the 0.3s deadline", "Raise timeout=",
                                              "127.0.0.1:")),
             model="openai/hang-2", timeout=0.3, bound=1.5, adapter_bound=3.0),
    Scenario("drip", "one byte every 0.5 s, forever (`timeout=1`; no read ever waits 1 s)",
             Expect(ProviderTimeoutError, 1, ("did not finish within the 1s deadline", "covers the whole call",
                                              "Raise timeout=")),
             model="openai/drip", timeout=1.0, bound=2.0, adapter_bound=3.0),
    Scenario("malformed-json", "malformed JSON (SSE: a broken event)",
             Expect(**_UNAVAILABLE3, says=("failed on its side", "Expecting value", "Try again later")),
             model="openai/malformed-json"),
    Scenario("no-choices", "200 with no choices",
             Expect(ProviderError, 1, ("returned no choices",)), model="openai/no-choices",
             streams=Expect(**_UNAVAILABLE3, says=("Stream ended before a finish_reason", "Try again later"))),
    Scenario("trickle", "slow trickle of SSE bytes (8 B every 5 ms)", Expect(attempts=1), model="openai/trickle",
             bound=4.0, adapter_bound=4.0),
    Scenario("ollama-404", "Ollama 404 'model not found'",
             Expect(ModelNotFoundError, 1, ("Ollama model 'missing' not found", "ollama pull missing")),
             model="ollama_chat/missing", adapter_bound=2.0),
)


class RecordingAdapter(LocalAdapter):
    """The local adapter, keeping every body it hands to a Modal function (``.local()`` here; the Modal
    adapter hands the same dict, built by the shared ``Adapter._prepare``, to ``.remote()``)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def _call(self, function, body):
        self.bodies.append(body)
        return super()._call(function, body)

    def _call_gen(self, function, body):
        self.bodies.append(body)
        return super()._call_gen(function, body)

    def _map(self, function, bodies, concurrency):
        self.bodies.extend(bodies)
        return super()._map(function, bodies, concurrency)


EXTRA_SECRET_TESTS = ("batch output", "modal payload", "key-echoing upstream", "key smuggled into a payload")


@dataclass
class Cell:
    outcome: str
    bound_s: float
    message: str | None


@dataclass
class Report:
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    secret_checks: Counter = field(default_factory=Counter)  # surface -> checks made
    secret_tests: set[str] = field(default_factory=set)
    soak: dict | None = None

    def count_secret_check(self, surface: str, n: int = 1) -> None:
        self.secret_checks[surface] += n

    def missing(self) -> list[str]:
        out = [f"{s.id} x {c}" for s in SCENARIOS for c in CALLS if (s.id, c) not in self.cells]
        out += [f"secret test: {name}" for name in EXTRA_SECRET_TESTS if name not in self.secret_tests]
        if self.soak is None:
            out.append("soak")
        return out


REPORT = Report()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_PORT = re.compile(r"127\.0\.0\.1:\d+")


def normalize(message: str) -> str:
    """Messages without the run's ports, so the doc is stable."""
    return _PORT.sub("127.0.0.1:<port>", message)


def outcome_text(expect: Expect, *, error: BaseException | None, attempts: int, chunks: int, note: str) -> str:
    """The table's outcome, from what was observed (the test has asserted it equals ``expect``)."""
    plural = "s" if attempts != 1 else ""
    if error is None:
        text = "ok, 1 attempt" if attempts == 1 else f"ok after {attempts} attempts"
        return f"{text} ({note})" if note else text
    text = f"{type(error).__name__}, {attempts} attempt{plural}"
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        text += f", `retry_after={error.retry_after:g}`"
    if expect.mid_stream:
        text += f" (after {chunks} chunk delivered; raised, not retried)"
    return text


def render(report: Report) -> str:
    lines = [
        "# Reliability",
        "",
        "Generated by `tests/reliability/` from what the suite observed and asserted: do not edit by hand.",
        "Regenerate with `UPDATE_RELIABILITY_DOC=1 .venv/bin/python -m pytest -q tests/reliability`; the plain",
        "suite fails while this file differs from what it would generate.",
        "",
        "## Fault injection: scenario x call",
        "",
        "Every cell runs against the loopback fake server (`theory_modal.testing.fake_llm`), scenario chosen by",
        "model name or by a scripted queue. Direct calls (`chat`, `stream_chat`, `achat`, `astream_chat`) use",
        "`get_llm_provider(\"litellm\", api_base=..., api_key=..., retry=RetryPolicy(3 attempts, 10-50 ms back-off))`.",
        "The local adapter runs `llm/litellm@1` in live mode through the Modal function objects' `.local()`,",
        "configured from the environment as a container is (`OPENAI_API_KEY`, `OPENAI_API_BASE`, `LLM_API_BASE`),",
        "with the container's default retry policy (3 attempts, 0.5 s base back-off); for the hang and drip rows",
        "its provider gets that row's `timeout` (the container's default is 60 s). `timeout` is a deadline for",
        "the whole call: retries, back-off and a stream to its last chunk, however the server paces its bytes.",
        "",
        "Each cell asserts: the reply text, or the exact error class with a message naming what happened and",
        "what to do; the attempts (`err.attempts`, and the fake server's hit count); for a stream that fails",
        "after its first chunk, that the chunk arrived, the stream raised and the server saw one request; and",
        "the time bound below (a lower bound too where a `Retry-After` wait must have happened).",
        "",
        "| scenario | call | outcome | bound s |",
        "| --- | --- | --- | --- |",
    ]
    n = 0
    for s in SCENARIOS:
        for c in CALLS:
            cell = report.cells[(s.id, c)]
            lines.append(f"| {s.title} | {CALL_TITLES[c]} | {cell.outcome} | {cell.bound_s:g} |")
            n += 1
    lines += [
        "",
        f"**Totals: {n} cells ({len(SCENARIOS)} scenarios x {len(CALLS)} calls), all {n} asserted.**",
        "",
        "### Messages",
        "",
        "The distinct messages the failing cells raised (ports shown as `<port>`):",
        "",
    ]
    for s in SCENARIOS:
        seen: list[str] = []
        for c in CALLS:
            msg = report.cells[(s.id, c)].message
            if msg and msg not in seen:
                seen.append(msg)
        for msg in seen:
            lines.append(f"- {s.title}: `{msg}`")
    total = sum(report.secret_checks.values())
    lines += [
        "",
        "## Secret hygiene",
        "",
        f"Two sentinel keys, one in `OPENAI_API_KEY` and one passed as `api_key=`, with debug logging on (root,",
        "`LiteLLM*`, `openai`, `httpx`, `httpcore` loggers at DEBUG, and `litellm.set_verbose`). Every cell above",
        f"ran that way; the scan looks for `{SENTINEL_CORE}`, so a partial key counts as a leak.",
        "",
        f"**{total} (scenario, call, surface) checks, no sentinel found:**",
        "",
        "| surface | checks |",
        "| --- | --- |",
    ]
    for surface, count in sorted(report.secret_checks.items()):
        lines.append(f"| {surface} | {count} |")
    lines += [
        "",
        "Beyond the matrix: a batch (`LocalAdapter().map`) of failing items, whose results JSON is scanned; the",
        "payloads the adapter hands to the Modal function (`.local()` here, `.remote()` on Modal: the same",
        "dict) never carry a key, and a payload or option that tries to carry one is refused without echoing",
        "it; an upstream that quotes the key back in its error body is redacted before the message is built.",
    ]
    soak = report.soak
    assert soak is not None
    lines += [
        "",
        "## Soak and batch integrity",
        "",
        f"{soak['requests']:,} `achat` requests, {soak['concurrency']} at a time, one attempt each, against the fake",
        f"server in a subprocess; every 10th request faults ({soak['faults']:,} in all: {soak['fault_kinds']}).",
        "",
        f"- Outcomes: {soak['requests']:,} for {soak['requests']:,} inputs, ids unique: {soak['ok']:,} replies, each",
        f"  the echo of its own prompt; {soak['errors']:,} errors ({soak['error_classes']}), each on a faulted input.",
        f"- Server side: {soak['hits']:,} requests, each prompt exactly once.",
        "- Open file descriptors and threads: back to their starting level (measured after a warm-up, with",
        "  litellm's pooled connections closed at both points); during the run the pool held no more sockets",
        "  than the concurrency.",
        "",
    ]
    return "\n".join(lines)
