"""Item 6: cold start, as the wall time of fresh processes, interleaved variant by variant.

Every process gets the same environment: ``HOME`` a fresh temp dir, no provider keys or bases, no ``MODAL_*``,
``LITELLM_LOCAL_MODEL_COST_MAP=True`` and ``LITELLM_OFFLINE_MODE=true`` (what our loader sets, so the bare-litellm
baselines run under the same configuration), and a warm bytecode cache: ``PYTHONPYCACHEPREFIX`` points at a
cache under the system temp dir (so the harness writes nothing into the repository) and an untimed warm-up run
of every variant fills it, along with the OS file cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.core import Check, Figure, Result, Settings, orders
from bench.server import ROOT

__all__ = ["bench_cold_start", "cold_env", "VARIANTS"]

PY = sys.executable
CLI = str(Path(sys.executable).with_name("theory-modal"))
_MOCK_CALL = (
    "import litellm; litellm.completion(model='openai/gpt-4o-mini', "
    "messages=[{'role': 'user', 'content': 'Hello'}], mock_response='smoke reply from openai/gpt-4o-mini: Hello')"
)

#: key -> (label, argv). Order matters only for the table; runs are interleaved.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "python_pass": ("python -c pass", [PY, "-c", "pass"]),
    "import_providers_mock": (
        "import providers + MockProvider.chat",
        [PY, "-c", "import providers; providers.get_llm_provider('mock').chat('Hello')"],
    ),
    "cli_mock": ("theory-modal run --ref llm/mock@1", [CLI, "run", "--ref", "llm/mock@1"]),
    "import_modal": ("import modal (info: what the local adapter imports)", [PY, "-c", "import modal"]),
    "import_litellm": ("import litellm", [PY, "-c", "import litellm"]),
    "litellm_mock_call": ("import litellm + one mock_response completion", [PY, "-c", _MOCK_CALL]),
    "litellm_mock_call_frozen": (
        "same, litellm imported as our loader does (gc paused, then frozen) (info)",
        [PY, "-c", "import gc; gc.disable(); " + _MOCK_CALL.replace("; ", "; gc.enable(); gc.freeze(); ", 1)],
    ),
    "cli_litellm_smoke": (
        "theory-modal run --ref llm/litellm@1 --mode smoke",
        [CLI, "run", "--ref", "llm/litellm@1", "--mode", "smoke"],
    ),
}


def cold_env(home: str) -> dict[str, str]:
    drop = ("OPENAI_BASE_URL", "LLM_API_BASE", "OLLAMA_HOST", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME")
    env = {
        k: v for k, v in os.environ.items()
        if not (k.endswith(("_API_KEY", "_API_BASE")) or k.startswith(("MODAL_", "LITELLM_")) or k in drop)
    }
    env.update(
        HOME=home,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_OFFLINE_MODE="true",
        PYTHONPYCACHEPREFIX=str(Path(tempfile.gettempdir()) / f"theory-modal-bench-pycache-{os.getuid()}"),
    )
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter_ns()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter_ns() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed, proc


def _import_tree(importtime_stderr: str) -> list[tuple[str, int, str | None]]:
    """``-X importtime`` output -> [(module, cumulative us, parent module or None)].

    importtime prints a module after everything it imported (post-order), indented two spaces per level."""
    rows: list[tuple[str, int, int]] = []
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") < 2:
            continue
        _, cum, raw = line.split("|", 2)
        try:
            cumulative = int(cum)
        except ValueError:
            continue  # the header line
        depth = (len(raw) - len(raw.lstrip(" ")) - 1) // 2
        rows.append((raw.strip(), cumulative, depth))
    out: list[tuple[str, int, str | None]] = []
    stack: list[str] = []  # walking backwards, every parent comes before its children
    for name, cumulative, depth in reversed(rows):
        del stack[depth:]
        out.append((name, cumulative, stack[-1] if stack else None))
        stack.append(name)
    out.reverse()
    return out


def _top_level(importtime_stderr: str, k: int = 6) -> dict[str, float]:
    """The slowest top-level imports, in ms of cumulative import time."""
    rows = sorted(((m, us) for m, us, parent in _import_tree(importtime_stderr) if parent is None), key=lambda r: -r[1])
    return {m: round(us / 1000, 1) for m, us in rows[:k]}


def _extra_imports(ours: str, baseline: str, k: int = 8) -> dict[str, float]:
    """Import subtrees present in ``ours`` but not in ``baseline``: (module -> cumulative ms), slowest first."""
    base = {m for m, _, _ in _import_tree(baseline)}
    tree = _import_tree(ours)
    roots = [(m, us) for m, us, parent in tree if m not in base and (parent is None or parent in base)]
    roots.sort(key=lambda r: -r[1])
    out = {m: round(us / 1000, 1) for m, us in roots[:k]}
    out["(total of all extra subtrees)"] = round(sum(us for _, us in roots) / 1000, 1)
    return out


def bench_cold_start(ctx: Any, s: Settings) -> Result:
    res = Result("cold_start", 6, "Cold start: wall time of fresh processes")
    profiled: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-home-") as home:
        env = cold_env(home)
        if not s.quick:  # warm-up: bytecode cache and OS file cache (quick mode measures as it finds them)
            for _, argv in VARIANTS.values():
                _run(argv, env)
        samples: dict[str, list[int]] = {k: [] for k in VARIANTS}
        keys = list(VARIANTS)
        for order in orders(keys, s.cold_n):
            for key in order:
                samples[key].append(_run(VARIANTS[key][1], env)[0])
        # Where the time goes: one extra, untimed run per variant with -X importtime (full mode; quick mode only
        # does the mock CLI, which the "never imports litellm" check needs).
        for key in VARIANTS if not s.quick else ("cli_mock",):
            profiled[key] = _run(VARIANTS[key][1], env | {"PYTHONPROFILEIMPORTTIME": "1"})[1].stderr

    for key, (label, _) in VARIANTS.items():
        res.add(key, Figure(label, "ms", [x / 1e6 for x in samples[key]]))
    med = {k: f.median for k, f in res.figures.items()}
    names = {m for m, _, _ in _import_tree(profiled["cli_mock"])}
    mock_imports_litellm = any(m == "litellm" or m.startswith("litellm.") for m in names)
    res.checks.append(Check("import providers + mock chat, median wall", med["import_providers_mock"], "<=", 100.0, "ms",
                            is_ratio=False))
    res.checks.append(Check("theory-modal run --ref llm/mock@1 imports litellm", mock_imports_litellm, "==", False,
                            is_ratio=False))
    res.checks.append(
        Check("median ratio litellm smoke CLI / (import litellm + mock_response)",
              med["cli_litellm_smoke"] / med["litellm_mock_call"], "<=", 1.10)
    )
    # The same CLI over a baseline that imports litellm the way our loader does (gc paused, heap frozen): what
    # modal, click and our own code add, with the loader's gain on litellm itself taken out.
    res.info["cli_smoke_over_frozen_baseline"] = med["cli_litellm_smoke"] / med["litellm_mock_call_frozen"]
    res.info["over_python_pass_ms"] = {k: round(v - med["python_pass"], 1) for k, v in med.items() if k != "python_pass"}
    res.info["cli_mock_imports_modal"] = "modal" in names
    res.info["top_level_imports_ms"] = {k: _top_level(v) for k, v in profiled.items()}
    if "cli_litellm_smoke" in profiled:
        res.info["cli_litellm_smoke_extra_imports_ms"] = _extra_imports(
            profiled["cli_litellm_smoke"], profiled["litellm_mock_call"])
        res.info["cli_mock_extra_imports_ms"] = _extra_imports(profiled["cli_mock"], profiled["import_providers_mock"])
    res.info["note"] = ("import times come from one extra -X importtime run per variant; importtime inflates them, "
                        "so compare them with each other, not with the wall times")
    return res
