"""Each deployed image installs every package its containers import.

The emulator runs containers from this checkout's venv, which has everything, so a package missing from an
image's lock only shows up on real Modal, as a ``ModuleNotFoundError`` in the container. Here a fresh
interpreter imports ``theory_modal.app`` and awaits the very handlers the Modal functions await, for the mock
processor, on the requests that reach the most code (plain, streamed, ``output_schema`` with every keyword
family, tools, history, a refused request); then every module it loaded is mapped to its distribution. Each
distribution must be in the image's lock, or be Modal's own client or one of its dependencies (Modal installs
those in every container), or be the standard library or this project.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import asyncio, json, sys
from theory_modal import app, handlers  # what a container imports
schema = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 30, "format": "email"},
    "age": {"type": "integer", "minimum": 0, "maximum": 130},
    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True},
    "kind": {"anyOf": [{"const": "x"}, {"$ref": "#/$defs/k"}]}},
  "required": ["name", "age"], "additionalProperties": False, "$defs": {"k": {"type": "string"}}}
tools = [{"name": "lookup", "description": "find", "parameters": {"type": "object",
          "properties": {"q": {"type": "string"}}, "required": ["q"]}}]
payloads = [
    {"prompt": "hi", "mode": "smoke"},
    {"prompt": "hi", "mode": "smoke", "output_schema": schema},
    {"prompt": "hi", "mode": "smoke", "tools": tools, "tool_choice": "required"},
    {"prompt": "hi", "mode": "smoke", "history": [{"role": "user", "content": "a"},
                                                   {"role": "assistant", "content": "b"}]},
    {"prompt": "hi", "mode": "smoke", "output_schema": {"$ref": "https://example.invalid/x"}},
    {"prompt": "", "mode": "smoke"},
    # a pattern: checked with the bounded matcher's module, then refused (the mock cannot promise a match)
    {"prompt": "hi", "mode": "smoke", "output_schema": {"type": "string", "pattern": "^a+$"}},
]

async def main():
    refused = 0
    for p in payloads:
        try:  # a refused request raises a remote-safe error, as the Modal function does
            out = await handlers.chat("llm/mock@1", "mock", p)
            assert out.get("text") is not None or out.get("data") is not None or out.get("tool_calls"), out
        except RuntimeError:
            refused += 1
        try:
            async for _ in handlers.stream("llm/mock@1", "mock", p):
                pass
        except RuntimeError:
            refused += 1
    assert refused == 6, refused  # the remote $ref, the empty prompt and the pattern, on both functions

asyncio.run(main())
print(json.dumps(sorted({m.split(".")[0] for m in list(sys.modules)})))
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> set[str]:
    return {_norm(n) for n in re.findall(r"^([A-Za-z0-9_.\-]+)==", path.read_text(), flags=re.M)}


def _closure(dist: str) -> set[str]:
    env = {"extra": "", "sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11",
           "python_full_version": "3.11.0", "os_name": "posix", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    seen, todo = set(), [dist]
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return seen


def _modules(script: str, env: dict[str, str]) -> set[str]:
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def _loaded_distributions(script: str, env_extra: dict[str, str]) -> set[str]:
    """Distributions of the modules ``script`` loads beyond what this interpreter loads at startup (e.g. a
    development checkout's ``.pth`` hooks, which a container does not have)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "THEORY_MODAL_"))}
    env.update(env_extra)
    startup = _modules('import json, sys; print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))', env)
    modules = _modules(script, env) - startup
    by_module = metadata.packages_distributions()
    dists: set[str] = set()
    for top in modules:
        if top in sys.stdlib_module_names or top in ("providers", "theory_modal", "__main__"):
            continue
        for dist in by_module.get(top, []):
            dists.add(_norm(dist))
    return dists


def test_the_mock_image_installs_everything_a_mock_container_imports():
    """Invariant: every third-party distribution a mock container loads while serving plain, streamed,
    structured, tool and refused requests is in requirements/mock-image.lock or comes with Modal's client."""
    loaded = _loaded_distributions(_SCRIPT, {"THEORY_MODAL_IMAGE": "mock"})
    provided = _closure("modal") | _pins(ROOT / "requirements" / "mock-image.lock")
    missing = sorted(loaded - provided - {"theory-modal"})
    assert missing == [], f"a mock container imports {missing}, which its image does not install"
    assert {"jsonschema", "regex"} <= loaded  # the structured requests really ran the schema code


def test_the_litellm_image_installs_everything_the_mock_image_does():
    """The LiteLLM image runs the same handlers (and LiteLLM): its lock holds the mock image's packages."""
    assert _pins(ROOT / "requirements" / "mock-image.lock") <= _pins(ROOT / "requirements" / "litellm-image.lock")
