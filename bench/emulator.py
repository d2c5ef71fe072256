"""Item 7: through the loopback Modal emulator (``theory_modal.testing.emulator``), when it is present.

``deploy.py`` is deployed with the real ``python -m modal deploy deploy.py`` (cwd = the repo, the emulator's client
environment), then ``modal.Function.from_name("theory", "mock_chat")`` is called from this process:

* a warm ``.remote(payload)`` round trip vs ``LocalAdapter().run("llm/mock@1", payload)``;
* ``.map`` over N payloads vs N sequential ``.remote()`` calls;
* the cost of the Modal hop, as rates next to their in-process twins: a stream's chunks/s through
  ``mock_stream.remote_gen`` vs ``LocalAdapter().stream``, and ``.map``'s inputs/s vs ``LocalAdapter().map``.
  The mock processor keeps it hermetic (the containers need no LLM server), so the figures are the hop itself.

Skipped, with the reason in the table and the JSON, when the emulator cannot be imported or started.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from bench.core import Check, Figure, Result, Settings, interleave, summarize
from bench.server import ROOT

__all__ = ["bench_emulator", "Skip"]

APP, FUNCTION, REF = "theory", "mock_chat", "llm/mock@1"
T = TypeVar("T")


class Skip(Exception):
    """The benchmark cannot run here; the message says why."""


def _bounded(seconds: float, fn: Callable[[], T], what: str) -> T:
    """Run a blocking call in a daemon thread; give up (Skip) instead of hanging the harness."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"bench-{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Skip(f"emulator did not answer: {what} took more than {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _reset_modal_client() -> None:
    """modal caches one client built from the environment; forget it so the next call reads MODAL_* afresh."""
    with contextlib.suppress(Exception):
        from modal._utils.async_utils import synchronizer
        from modal.client import _Client

        client = _Client._client_from_env
        _Client._set_env_client(None)
        if client is not None:
            with contextlib.suppress(Exception):
                synchronizer._translate_out(client).close()


@contextlib.contextmanager
def _client_env(env: dict[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("MODAL_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(env)
    _reset_modal_client()
    try:
        yield
    finally:
        _reset_modal_client()
        for k in [k for k in os.environ if k.startswith("MODAL_")]:
            del os.environ[k]
        os.environ.update(saved)


def bench_emulator(ctx: Any, s: Settings) -> Result:
    res = Result("emulator", 7, "Through the Modal emulator: warm .remote() and .map vs sequential .remote()")
    try:
        from theory_modal.testing.emulator import ModalEmulator
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        raise Skip(f"emulator not available: cannot import theory_modal.testing.emulator ({type(exc).__name__}: {exc})") from None
    for attr in ("start", "stop", "client_env"):
        if not hasattr(ModalEmulator, attr):
            raise Skip(f"emulator not available: ModalEmulator has no {attr}()")
    try:
        emu = ModalEmulator()
        emu.start()
    except Exception as exc:  # noqa: BLE001
        raise Skip(f"emulator not available: could not start ({type(exc).__name__}: {exc})") from None
    try:
        client_env = dict(emu.client_env())
        _deploy(client_env, res)
        with _client_env(client_env):
            _measure(res, s, emu)
        _thin_client_cold_start(res, s, client_env)
    finally:
        emu.stop()
    return res


def _deploy(client_env: dict[str, str], res: Result) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(client_env)
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "modal", "deploy", "deploy.py"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise Skip("emulator not available: `modal deploy deploy.py` took more than 300 s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise Skip(f"emulator not available: `modal deploy deploy.py` exited {proc.returncode}: {tail[0][:200]}")
    res.info["deploy_s"] = round(time.perf_counter() - t0, 2)


_THIN_CLIENT = (
    "import theory_modal.adapters as a; "
    "r = a.get_adapter('modal').run('llm/mock@1', {'prompt': 'Hello', 'mode': 'smoke'}); "
    "assert r['text'] == 'mock reply to: Hello', r"
)


def _thin_client_cold_start(res: Result, s: Settings, client_env: dict[str, str]) -> None:
    """Wall time of a fresh process that imports the thin client and makes one Modal call (a warm container on
    the emulator), next to ``python -c pass`` and ``import modal``, interleaved, in item 6's environment."""
    import tempfile

    from bench.coldstart import cold_env
    from bench.core import orders

    variants = {
        "python_pass": [sys.executable, "-c", "pass"],
        "import_modal": [sys.executable, "-c", "import modal"],
        "thin_client_call": [sys.executable, "-c", _THIN_CLIENT],
    }
    with tempfile.TemporaryDirectory(prefix="bench-home-") as home:
        env = cold_env(home) | client_env
        samples: dict[str, list[float]] = {k: [] for k in variants}
        for key, argv in variants.items():  # warm-up: bytecode and file caches, and a warm container
            _run_checked(argv, env, key)
        for order in orders(list(variants), max(2, s.cold_n // 2)):
            for key in order:
                samples[key].append(_run_checked(variants[key], env, key))
    res.add("cold_thin_client", Figure("fresh process: import theory_modal.adapters + one Modal call", "ms",
                                       samples["thin_client_call"]))
    res.add("cold_import_modal", Figure("fresh process: import modal (info)", "ms", samples["import_modal"]))
    res.add("cold_python_pass", Figure("fresh process: python -c pass (info)", "ms", samples["python_pass"]))


def _run_checked(argv: list[str], env: dict[str, str], what: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    elapsed = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise AssertionError(f"{what} exited {proc.returncode}: {tail[0][:300]}")
    return elapsed


def _container_pids(emu: Any) -> list[int]:
    try:
        return [int(p) for p in emu.container_pids()]
    except Exception:  # noqa: BLE001 - diagnostics only
        return []


def _cpu(pids: list[int]) -> tuple[float, float]:
    """CPU seconds (user + system) of this process, and of the given processes (0 where unreadable)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    others = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            others += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return me.ru_utime + me.ru_stime, others


def _measure(res: Result, s: Settings, emu: Any) -> None:
    import modal

    from theory_modal.adapters import LocalAdapter

    fn = modal.Function.from_name(APP, FUNCTION)
    payload = {"prompt": "Hello from the benchmark", "mode": "smoke"}
    t0 = time.perf_counter()
    first = _bounded(180, lambda: fn.remote(payload), "the first .remote() (container start)")
    res.info["first_remote_s"] = round(time.perf_counter() - t0, 2)
    adapter = LocalAdapter()
    local = adapter.run(REF, payload)
    if first.get("text") != local.get("text"):
        raise AssertionError(f"remote and local replies differ: {first} vs {local}")

    samples = _bounded(
        600,
        lambda: interleave({"remote": lambda: fn.remote(payload), "local": lambda: adapter.run(REF, payload)},
                           s.emu_remote_n, min(s.warmup, 10)),
        "warm .remote() round trips",
    )
    res.add("remote", Figure("mock_chat.remote(payload), warm", "ms", summarize(samples["remote"], "ms")))
    res.add("local", Figure("LocalAdapter().run('llm/mock@1')", "ms", summarize(samples["local"], "ms")))

    payloads = [{"prompt": f"prompt number {i}", "mode": "smoke"} for i in range(s.emu_map_size)]
    expected = [f"mock reply to: {p['prompt']}" for p in payloads]

    def mapped() -> list[Any]:
        return list(fn.map(payloads))

    def sequential() -> list[Any]:
        return [fn.remote(p) for p in payloads]

    for side in (mapped, sequential):  # warm-up, and a correctness check of both
        got = [r["text"] for r in _bounded(600, side, f"{side.__name__} warm-up")]
        if got != expected:
            raise AssertionError(f"{side.__name__} returned the wrong replies (first: {got[:1]})")
    n = s.emu_map_size
    pids = _container_pids(emu)
    sides = [("map", mapped), ("sequential", sequential)]
    wall: dict[str, list[float]] = {"map": [], "sequential": []}
    cpu: dict[str, list[tuple[float, float]]] = {"map": [], "sequential": []}

    def rounds() -> None:
        for r in range(s.emu_map_rounds):
            for name, side in sides if r % 2 == 0 else reversed(sides):
                c0, t0 = _cpu(pids), time.perf_counter()
                side()
                t1, c1 = time.perf_counter(), _cpu(pids)
                wall[name].append(t1 - t0)
                cpu[name].append((c1[0] - c0[0], c1[1] - c0[1]))

    _bounded(1200, rounds, ".map rounds")
    res.add("map", Figure(f".map over {n} payloads", "s", wall["map"]))
    res.add("sequential", Figure(f"{n} sequential .remote()", "s", wall["sequential"]))
    res.checks.append(Check(f"speed-up of .map over {n} sequential .remote()", res.ratio("sequential", "map"), ">=", 5.0))
    res.info["remote_over_local_ratio"] = res.ratio("remote", "local")
    res.info["remote_overhead_ms"] = res.figures["remote"].median - res.figures["local"].median
    # Where the CPU goes per input (this process = modal client + the in-process emulator; containers = the
    # container processes), and the speed-up this machine can give at best if that CPU is the bottleneck.
    per_input = {}
    for name in ("map", "sequential"):
        here = sum(c[0] for c in cpu[name]) / len(cpu[name]) / n * 1000
        there = sum(c[1] for c in cpu[name]) / len(cpu[name]) / n * 1000
        per_input[name] = {"bench_process_ms": round(here, 2), "containers_ms": round(there, 2),
                           "total_ms": round(here + there, 2)}
    res.info["cpu_per_input"] = per_input
    cores = os.cpu_count() or 1
    seq_wall_per_input = res.figures["sequential"].median / n * 1000
    res.info["speedup_ceiling_cpu_bound"] = round(seq_wall_per_input / (per_input["map"]["total_ms"] / cores), 2)
    res.info["container_pids_measured"] = len(pids)
    _rates(res, s, adapter, payloads)


def _rates(res: Result, s: Settings, adapter: Any, payloads: list[dict[str, Any]]) -> None:
    """Chunks/s of one stream and inputs/s of a ``.map``, through the emulator and in process, interleaved."""
    import modal

    stream_fn = modal.Function.from_name(APP, FUNCTION.replace("_chat", "_stream"))
    fn = modal.Function.from_name(APP, FUNCTION)
    prompt = {"prompt": " ".join(f"word{i}" for i in range(s.emu_stream_words)), "mode": "smoke"}

    def remote_stream() -> int:
        return sum(1 for item in stream_fn.remote_gen(prompt) if item.get("type") == "delta")

    def local_stream() -> int:
        return sum(1 for _ in adapter.stream(REF, prompt))

    chunks = local_stream()
    if _bounded(180, remote_stream, "the first .remote_gen()") != chunks or chunks < 2:
        raise AssertionError(f"remote and local streams delivered different chunk counts ({chunks} locally)")
    n = len(payloads)

    def remote_map() -> int:
        return len(list(fn.map(payloads)))

    def local_map() -> int:
        return len(list(adapter.map(REF, payloads)))

    samples = _bounded(
        1200,
        lambda: interleave({"remote_stream": remote_stream, "local_stream": local_stream, "remote_map": remote_map,
                            "local_map": local_map}, max(2, s.emu_map_rounds * 2), 1),
        "stream and .map rates",
    )
    res.add("stream_remote_cps", Figure(f"mock_stream.remote_gen: chunks/s ({chunks} chunks)", "cps",
                                        [chunks / (x / 1e9) for x in samples["remote_stream"]]))
    res.add("stream_local_cps", Figure("LocalAdapter().stream, in process: chunks/s", "cps",
                                       [chunks / (x / 1e9) for x in samples["local_stream"]]))
    res.add("map_remote_ips", Figure(f"mock_chat.map over {n}: inputs/s", "ips",
                                     [n / (x / 1e9) for x in samples["remote_map"]]))
    res.add("map_local_ips", Figure(f"LocalAdapter().map over {n}, in process: inputs/s", "ips",
                                    [n / (x / 1e9) for x in samples["local_map"]]))
    res.info["stream_remote_over_local"] = res.ratio("stream_remote_cps", "stream_local_cps")
    res.info["map_remote_over_local"] = res.ratio("map_remote_ips", "map_local_ips")
