"""`pip install theory-modal` (the thin client) in a fresh venv, calling the deployed app with no LiteLLM.

The venv is built without leaving the machine: this checkout is built into a wheel offline and installed with
pip (``--no-deps --no-index``), and the thin client's dependency closure (worked out from the wheel's own
requirements and the installed packages' metadata, no extras) is linked in from the hash-locked environment.
LiteLLM is not in that closure, so ``import litellm`` fails there for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
EXTRA = "pip install 'theory-modal[litellm]'"


def _closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements pull in, markers evaluated with no extra selected."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        dist = metadata.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), f"{req} not met by {dist.version}"
        seen[name] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return seen


def _link_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Make ``dist`` importable in ``site`` by linking its top-level files and its metadata directory."""
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    base = Path(str(dist.locate_file("")))
    for top in tops:
        target = site / top
        if not target.exists():
            target.symlink_to(base / top)


@pytest.fixture(scope="module")
def thin_venv(tmp_path_factory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("thin")
    wheels = work / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300,
                       cwd=work)
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("theory_modal-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                        "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    wheel_requires = metadata.PathDistribution(next(site.glob("theory_modal-*.dist-info"))).requires or []
    deps = _closure([r for r in wheel_requires if "extra ==" not in r])
    assert "litellm" not in deps and "openai" not in deps, sorted(deps)
    assert "modal" in deps and "jsonschema" in deps
    for dist in deps.values():
        _link_distribution(dist, site)
    yield venv


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE")) and not k.startswith(("MODAL_", "THEORY_MODAL_", "PYTHON"))
           and k not in ("LLM_API_BASE", "VIRTUAL_ENV")}
    env.update(HOME=str(tmp_path), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


CALLER = """
import importlib.util, json, sys
assert importlib.util.find_spec("litellm") is None, "litellm must not be importable in the thin client"
import modal
from theory_modal.adapters import get_adapter

adapter = get_adapter("modal")
out = {
    "mock": adapter.run("llm/mock@1", {"prompt": "hi from the thin client", "mode": "live"})["text"],
    "litellm_smoke": adapter.run("llm/litellm@1", {"prompt": "hi", "mode": "smoke"})["text"],
    "stream": "".join(adapter.stream("llm/mock@1", {"prompt": "a b", "mode": "live"})),
    "raw": modal.Function.from_name("theory", "mock_chat").remote({"prompt": "raw", "mode": "live"})["text"],
    "litellm_loaded": "litellm" in sys.modules,
}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_the_thin_client_calls_the_deployed_app_without_litellm(thin_venv, tmp_path):
    from theory_modal.testing.emulator import ModalEmulator

    python = thin_venv / "bin" / "python"
    cli = thin_venv / "bin" / "theory-modal"
    probe = subprocess.run([str(python), "-c", "import litellm"], capture_output=True, text=True, env=_env(tmp_path))
    assert probe.returncode == 1 and "No module named 'litellm'" in probe.stderr

    with ModalEmulator(state_dir=tmp_path / "emu") as emu:
        emu.deploy(ROOT / "deploy.py", env={"THEORY_MODAL_SECRETS": ""})
        env = _env(tmp_path, **emu.client_env())

        r = subprocess.run([str(python), "-c", CALLER], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out == {
            "mock": "mock reply to: hi from the thin client",
            "litellm_smoke": "smoke reply from openai/gpt-4o-mini: hi",
            "stream": "mock reply to: a b",
            "raw": "mock reply to: raw",
            "litellm_loaded": False,
        }

        # The installed console script: --adapter modal defaults to live mode, and the summary says so.
        r = subprocess.run([str(cli), "run", "hi", "--ref", "llm/mock@1", "--adapter", "modal"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=180, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "mock reply to: hi\n" and "llm/mock@1 · live · mock" in r.stderr

        r = subprocess.run([str(cli), "doctor", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120)
        report = json.loads(r.stdout)
        assert report["versions"]["litellm"] == "not installed"
        assert report["modal"]["token"] == "accepted" and report["modal"]["deployed"] is True
        assert EXTRA in json.dumps(report)

    # The LiteLLM provider locally, without LiteLLM: one line naming the extra.
    r = subprocess.run([str(cli), "run", "hi"], capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stderr.strip() == f"error: {_missing_message()}"


def _missing_message() -> str:
    from providers.registry import LITELLM_MISSING

    return LITELLM_MISSING


def test_the_thin_closure_leaves_litellm_out_and_the_extra_brings_it():
    """The same closure logic as the fresh venv, on pyproject's declared requirements (fast, no venv)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    thin = _closure(project["dependencies"])
    assert "litellm" not in thin and "tiktoken" not in thin and "openai" not in thin
    full = _closure(project["dependencies"] + project["optional-dependencies"]["litellm"])
    assert "litellm" in full
    testing = _closure(project["optional-dependencies"]["testing"])
    assert {"modal", "pytest", "grpclib"} <= set(testing)
