"""``python -m bench [--quick] [--only NAME,...] [--out bench/results.json]``: run, print the table, write JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from bench import BENCHMARKS
from bench.core import Result, Settings
from bench.server import ROOT

__all__ = ["main", "run", "machine_info", "format_table"]


def _runners() -> dict[str, Callable[[Any, Settings], Result]]:
    from bench import coldstart, emulator, fast, llm

    return {
        "litellm_chat": llm.bench_litellm_chat,
        "litellm_stream": llm.bench_litellm_stream,
        "mock_chat": llm.bench_mock_chat,
        "local_adapter": llm.bench_local_adapter,
        "async_throughput": llm.bench_async_throughput,
        "cold_start": coldstart.bench_cold_start,
        "emulator": emulator.bench_emulator,
        "fast_stream": fast.bench_fast_stream,
        "fast_chat": fast.bench_fast_chat,
        "async_streams": fast.bench_async_streams,
    }


TITLES = {
    "litellm_chat": (1, "LiteLLMProvider.chat vs raw litellm.completion"),
    "litellm_stream": (2, "stream_chat vs raw litellm.completion(stream=True)"),
    "mock_chat": (3, "MockProvider.chat per call"),
    "local_adapter": (4, "LocalAdapter.run vs the provider directly"),
    "async_throughput": (5, "achat vs raw litellm.acompletion throughput"),
    "cold_start": (6, "Cold start in fresh processes"),
    "emulator": (7, "Through the Modal emulator"),
    "fast_stream": (8, "stream_chat (fast path) vs raw openai SDK, per chunk"),
    "fast_chat": (9, "chat (fast path) vs raw openai SDK"),
    "async_streams": (10, "32 concurrent astream_chat streams vs AsyncOpenAI"),
}


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False,
                             env=os.environ | {"GIT_OPTIONAL_LOCKS": "0"})  # read-only: no index refresh
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_tracked_files_modified": None if status is None else len(status.splitlines()),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "litellm": _version("litellm"),
        "modal": _version("modal"),
        "openai": _version("openai"),
        "httpx": _version("httpx"),
    }


def _prepare_process_env() -> None:
    """This process talks to loopback servers only: no provider keys or bases from the host, litellm offline."""
    for k in list(os.environ):
        if k.endswith(("_API_KEY", "_API_BASE")) or k in ("OPENAI_BASE_URL", "LLM_API_BASE", "OLLAMA_HOST"):
            del os.environ[k]
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["LITELLM_OFFLINE_MODE"] = "true"


def run(names: list[str], settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.emulator import Skip
    from bench.llm import LLMContext

    runners = _runners()
    ctx = LLMContext(settings)
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    try:
        for name in names:
            item, title = TITLES[name]
            log(f"[bench] {item}. {name} ...")
            t0 = time.perf_counter()
            try:
                res = runners[name](ctx, settings)
                res.seconds = time.perf_counter() - t0
                results[name] = res.to_dict()
            except Skip as exc:
                results[name] = Result(name, item, title, skipped=str(exc), seconds=time.perf_counter() - t0).to_dict()
            except Exception as exc:  # noqa: BLE001 - recorded, and the exit code says so
                traceback.print_exc()
                results[name] = {"item": item, "title": title, "error": f"{type(exc).__name__}: {exc}",
                                 "seconds": round(time.perf_counter() - t0, 1)}
            log(f"[bench]    done in {time.perf_counter() - t0:.1f} s")
    finally:
        ctx.close()
    return {"load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "benchmarks": results}


# ------------------------------------------------------------------------------------------------ table
def _fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "rps":
        return f"{value:,.0f} req/s"
    if unit == "cps":
        return f"{value:,.0f} chunk/s"
    if unit == "ips":
        return f"{value:,.0f} inp/s"
    if unit == "us":
        return f"{value:.2f} us"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.2f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def _unit(fig: dict[str, Any]) -> str:
    return next(k for k in fig if k.startswith("median_"))[len("median_"):]


def format_table(report: dict[str, Any]) -> str:
    lines = []
    header = f"{'#':<2} {'benchmark':<17} {'figure':<52} {'n':>5} {'median':>13} {'p90':>13}"
    lines.append(header)
    lines.append("-" * len(header))
    for name, b in report["benchmarks"].items():
        first = True
        tag = f"{b['item']:<2} {name:<17}"
        blank = " " * len(tag)
        if "skipped" in b:
            lines.append(f"{tag} SKIPPED: {b['skipped']}")
            continue
        if "error" in b:
            lines.append(f"{tag} ERROR: {b['error']}")
            continue
        for fig in b["figures"].values():
            u = _unit(fig)
            lines.append(f"{tag if first else blank} {fig['label'][:52]:<52} {fig['n']:>5} "
                         f"{_fmt(fig['median_' + u], u):>13} {_fmt(fig['p90_' + u], u):>13}")
            first = False
        for c in b.get("checks", []):
            v = c["value"]
            shown = f"{v:.3f}" if isinstance(v, float) else str(v)
            lines.append(f"{blank}   => {c['name']}: {shown}  (target {c['target']})  {'MET' if c['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few iterations of everything (CI smoke of the harness)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(BENCHMARKS)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"), help="where to write the JSON")
    parser.add_argument("--latency-ms", type=float, default=None, help="server latency for items 1, 2, 4 (default 0)")
    parser.add_argument("--chunks", type=int, default=None, help="content chunks per streamed reply (default 8)")
    parser.add_argument("--async-latency-ms", type=float, default=None, help="server latency for item 5 (default 50)")
    parser.add_argument("--async-requests", type=int, default=None, help="requests per round in item 5")
    parser.add_argument("--async-concurrency", type=int, default=None, help="concurrency in item 5")
    parser.add_argument("--cold-n", type=int, default=None, help="fresh processes per variant in item 6 (default 10)")
    args = parser.parse_args(argv)

    wanted = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in wanted if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    names = [n for n in BENCHMARKS if n in wanted]  # always the canonical order
    settings = Settings.quick_settings() if args.quick else Settings()
    for opt in ("latency_ms", "chunks", "async_latency_ms", "async_requests", "async_concurrency", "cold_n"):
        if getattr(args, opt) is not None:
            setattr(settings, opt, getattr(args, opt))

    _prepare_process_env()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", **machine_info()}
    report["settings"] = {k: v for k, v in vars(settings).items()}
    report |= run(names, settings, log)
    report["total_seconds"] = round(time.perf_counter() - started, 1)

    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, out)

    print(f"theory-modal benchmarks ({report['mode']}) · {report['date']} · commit {report['git_commit']} · "
          f"{report['cores']} cores · Python {report['python']} · litellm {report['litellm']} · modal {report['modal']}")
    print(f"load average before/after: {report['load_average_before']} / {report['load_average_after']}")
    print(format_table(report))
    print(f"total {report['total_seconds']} s · JSON: {out}")
    errors = [n for n, b in report["benchmarks"].items() if "error" in b]
    if errors:
        log(f"[bench] errors in: {', '.join(errors)}")
        return 1
    return 0
