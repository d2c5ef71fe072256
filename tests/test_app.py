"""Offline introspection of the Modal app: functions, shared image, serving settings, secrets.

Reads modal 1.6.4 private closures (see shared/notes/modal.md §4) in one helper; modal is pinned exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modal._utils.async_utils import synchronizer

ROOT = Path(__file__).resolve().parents[1]


def _closure(obj) -> dict:
    o = synchronizer._translate_in(obj)
    return dict(zip(o._load.__code__.co_freevars, (c.cell_contents for c in o._load.__closure__ or ())))


def _image_layers(image, builder="2025.06") -> list[list[str]]:
    cl = _closure(image)
    out: list[list[str]] = []
    bases = list((cl.get("base_images") or {}).values()) + ([cl["base_image"]] if cl.get("base_image") else [])
    for base in bases:  # base_image: the layer under a local-source mount
        out += _image_layers(base, builder)
    if cl.get("dockerfile_function"):
        out.append(list(cl["dockerfile_function"](builder).commands))
    return out


def _config(fn) -> dict:
    info, cl = fn.info(), _closure(fn)
    return {
        "timeout": info.timeout,
        "max_concurrent_inputs": cl["max_concurrent_inputs"],
        "enable_memory_snapshot": cl["enable_memory_snapshot"],
        "retry_policy": cl["retry_policy"],
        "secrets": list(cl["secrets"]),
        "image": cl["image"],
        "is_generator": synchronizer._translate_in(fn)._is_generator,
    }


@pytest.fixture(scope="module")
def app_module():
    import theory_modal.app as m

    return m


def test_one_chat_and_one_stream_function_per_processor(app_module):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registered = set(app_module.app.registered_functions)
    assert registered == {"mock_chat", "mock_stream", "litellm_chat", "litellm_stream"} == set(app_module.FUNCTIONS)
    assert app_module.app.name == "theory"
    for name, fn in app_module.FUNCTIONS.items():
        assert _config(fn)["is_generator"] is name.endswith("_stream")
        assert getattr(app_module, name) is fn  # containers resolve functions as module globals


def test_every_function_uses_the_one_image_with_the_local_sources(app_module):
    shared = synchronizer._translate_in(app_module.image)
    for fn in app_module.FUNCTIONS.values():
        assert _config(fn)["image"] is shared
    layers = [c for layer in _image_layers(app_module.image) for c in layer]
    assert any("litellm==1.110.2" in c for c in layers)
    assert any("LITELLM_LOCAL_MODEL_COST_MAP" in c and "True" in c for c in layers)
    # without these the containers fail with ModuleNotFoundError
    assert shared._added_python_source_set == frozenset({"providers", "theory_modal"})


def test_litellm_pin_in_the_image_matches_the_lock(app_module):
    """The image installs the very litellm the hash lock pins (pyproject.toml only gives ranges)."""
    lock = (ROOT / "requirements.lock").read_text()
    name, _, pin = app_module.LITELLM_REQUIREMENT.partition("==")
    assert name == "litellm" and f"\nlitellm=={pin} " in lock


def test_serving_settings_are_the_documented_ones(app_module):
    f = app_module.FUNCTIONS
    for name in ("litellm_chat", "litellm_stream"):
        c = _config(f[name])
        assert (c["timeout"], c["max_concurrent_inputs"], c["enable_memory_snapshot"]) == (300, 32, True)
        assert c["retry_policy"] is None  # the provider's own loop is the only retry
    for name in ("mock_chat", "mock_stream"):
        c = _config(f[name])
        assert (c["timeout"], c["max_concurrent_inputs"]) == (60, 100)


def test_no_secret_is_required_by_default(app_module):
    for fn in app_module.FUNCTIONS.values():
        assert _config(fn)["secrets"] == []


def _import_in_subprocess(env_extra: dict, code: str) -> dict:
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_secret_names_and_app_name_come_from_the_environment_and_are_baked_into_the_image():
    code = (
        "import json, sys\n"
        "import theory_modal.app as m\n"
        "from modal._utils.async_utils import synchronizer\n"
        "fn = m.FUNCTIONS['litellm_chat']\n"
        "o = synchronizer._translate_in(fn)\n"
        "cl = dict(zip(o._load.__code__.co_freevars, (c.cell_contents for c in o._load.__closure__ or ())))\n"
        "names = [synchronizer._translate_in(s)._name for s in cl['secrets']]\n"
        "print(json.dumps({'app': m.app.name, 'secrets': names, 'litellm': 'litellm' in sys.modules}))\n"
    )
    got = _import_in_subprocess({"THEORY_MODAL_SECRETS": "openai-secret, anthropic-secret", "THEORY_MODAL_APP": "staging"}, code)
    assert got == {"app": "staging", "secrets": ["openai-secret", "anthropic-secret"], "litellm": False}


def test_importing_the_app_does_not_import_litellm():
    got = _import_in_subprocess({}, "import json, sys; import theory_modal.app; print(json.dumps('litellm' in sys.modules))")
    assert got is False
