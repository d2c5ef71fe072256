"""Soak and batch integrity: 5,000 ``achat`` requests with 10% injected faults.

Every input gets exactly one outcome (nothing lost, nothing duplicated, no reply crossed to another input),
and open file descriptors and threads come back to where they started. The fake server runs in a subprocess so
that the process measured is the client alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import pytest
from reliability_spec import REPORT

from providers import ProviderError, RateLimitError, RetryPolicy, get_llm_provider

REQUESTS = 5_000
CONCURRENCY = 50
FAULT_EVERY = 10  # every 10th request faults: 10%
#: Fault kinds, taken in turn by the faulted requests, with the error class each must end in.
FAULTS = {
    "error-500": "ProviderUnavailableError",
    "error-429-noretry": "RateLimitError",
    "reset": "ProviderUnavailableError",
    "malformed-json": "ProviderUnavailableError",
    "error-503-noretry": "ProviderUnavailableError",
}
WARMUP = 200
BOUND_S = 120  # the whole test, warm-up included; it takes ~30 s on 2 cores


def fault_for(i: int) -> str | None:
    if i % FAULT_EVERY != FAULT_EVERY - 1:
        return None
    kinds = list(FAULTS)
    return kinds[(i // FAULT_EVERY) % len(kinds)]


def open_fds() -> Counter:
    """Open descriptors by kind (socket, pipe, anon_inode, file path)."""
    kinds: Counter = Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            kinds[os.readlink(f"/proc/self/fd/{fd}").split(":")[0]] += 1
        except OSError:  # the listing's own descriptor, already closed
            pass
    return kinds


@pytest.fixture
def fake_server_process():
    """``python -m theory_modal.testing.fake_llm`` on 127.0.0.1, stopped (and waited for) afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "theory_modal.testing.fake_llm", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("LISTENING 127.0.0.1:"), f"fake server did not start: {line!r}"
        yield "http://" + line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def _post(url: str) -> None:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30):
        pass


async def _close_pooled_connections(litellm) -> None:
    """Close litellm's cached async clients (its connection pools) and forget them."""
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()
    litellm.in_memory_llm_clients_cache.flush_cache()
    for _ in range(5):  # let the transports' close callbacks run
        await asyncio.sleep(0.01)


def _run(llm, litellm, ids: range) -> tuple[list[tuple[int, str, object]], Counter]:
    """All of ``ids`` through ``achat``, CONCURRENCY at a time; the outcomes, and the fds seen at the end of the
    run while the pool was still open."""

    async def main():
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int):
            fault = fault_for(i)
            async with gate:
                try:
                    reply = await llm.achat(f"req-{i}", model=f"openai/{fault or 'gpt-4o-mini'}")
                    return i, "reply", reply.text
                except ProviderError as exc:
                    return i, "error", exc

        outcomes = await asyncio.gather(*(one(i) for i in ids))
        pooled = open_fds()
        await _close_pooled_connections(litellm)
        return outcomes, pooled

    return asyncio.run(main())


@pytest.mark.slow
def test_soak_5000_async_requests_with_10_percent_faults(fake_server_process, litellm_loaded, no_provider_keys):
    t0 = time.monotonic()
    base = fake_server_process
    llm = get_llm_provider("litellm", api_base=base + "/v1", api_key="sk-soak-000000000000",
                           retry=RetryPolicy(max_attempts=1), timeout=30)

    # Warm up (client caches, executor threads, litellm's logging worker), then measure the baseline.
    _run(llm, litellm_loaded, range(1_000_000, 1_000_000 + WARMUP))
    _post(base + "/__reset")
    fds_before, threads_before = open_fds(), set(threading.enumerate())

    started = time.monotonic()
    outcomes, pooled = _run(llm, litellm_loaded, range(REQUESTS))
    soak_s = time.monotonic() - started

    # ---- every input exactly one outcome: nothing lost, nothing duplicated, nothing crossed
    assert len(outcomes) == REQUESTS
    assert sorted(i for i, _, _ in outcomes) == list(range(REQUESTS))
    errors: Counter = Counter()
    for i, kind, value in outcomes:
        fault = fault_for(i)
        if fault is None:
            assert kind == "reply" and value == f"echo: req-{i}", (i, kind, value)
        else:
            assert kind == "error", (i, fault, value)
            assert type(value).__name__ == FAULTS[fault], (i, fault, value)
            assert value.attempts == 1 and value.model == f"openai/{fault}"
            if isinstance(value, RateLimitError):
                assert value.retry_after is None
            errors[type(value).__name__] += 1
    n_faults = REQUESTS // FAULT_EVERY
    assert sum(errors.values()) == n_faults

    # ---- the server saw each prompt exactly once (one attempt each: no hidden SDK retries either)
    seen = Counter(r["body"]["messages"][-1]["content"] for r in _get(base + "/__requests")
                   if r["path"] == "/v1/chat/completions")
    assert sum(seen.values()) == REQUESTS
    assert set(seen) == {f"req-{i}" for i in range(REQUESTS)} and set(seen.values()) == {1}

    # ---- resources: the pool stayed bounded by the concurrency, and everything came back to the baseline
    grown = pooled["socket"] - fds_before["socket"]
    assert grown <= CONCURRENCY + 2, (fds_before, pooled)  # one per concurrent request + the loop's self-pipe pair
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (set(threading.enumerate()) - threads_before
                                           or sum(open_fds().values()) > sum(fds_before.values())):
        time.sleep(0.05)  # executor threads wind down after the loop closes
    new_threads = [t.name for t in set(threading.enumerate()) - threads_before]
    assert new_threads == [], f"threads left running: {new_threads}"
    fds_after = open_fds()
    assert sum(fds_after.values()) <= sum(fds_before.values()), (fds_before, fds_after)
    assert fds_after["socket"] <= fds_before["socket"], (fds_before, fds_after)

    total_s = time.monotonic() - t0
    assert total_s < BOUND_S
    print(f"\nsoak: {REQUESTS} requests in {soak_s:.1f}s ({REQUESTS / soak_s:.0f}/s); warm-up included {total_s:.1f}s; "
          f"fds {dict(fds_before)} -> pooled {dict(pooled)} -> {dict(fds_after)}; "
          f"threads {len(threads_before)} -> {threading.active_count()}")
    REPORT.soak = {
        "requests": REQUESTS,
        "concurrency": CONCURRENCY,
        "faults": n_faults,
        "fault_kinds": ", ".join(f"`{k}`" for k in FAULTS) + f", {n_faults // len(FAULTS)} each",
        "ok": REQUESTS - n_faults,
        "errors": n_faults,
        "error_classes": ", ".join(f"{n} {name}" for name, n in sorted(errors.items())),
        "hits": sum(seen.values()),
    }
