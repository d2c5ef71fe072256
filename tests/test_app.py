"""Offline introspection of the Modal app: functions, shared image, serving settings, secrets.

Reads modal 1.6.4 private closures (see shared/notes/modal.md §4) in one helper; modal is pinned exactly.
"""

from __future__ import annotations

import inspect
import json
import re
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
        result = fn.local({"prompt": "x", "mode": "smoke"})  # async bodies: a coroutine / an async generator
        assert inspect.isasyncgen(result) if name.endswith("_stream") else inspect.iscoroutine(result)
        result.aclose() if inspect.isasyncgen(result) else result.close()
        assert getattr(app_module, name) is fn  # containers resolve functions as module globals


def _mounted_files(image) -> list[str]:
    """Every remote path the image's local-source mount would upload (what a container sees under /root)."""
    mount = synchronizer._translate_in(_closure(image)["mount"])
    return sorted(str(remote) for entry in mount._entries for _, remote in entry.get_files_to_upload())


def test_each_function_is_written_out_with_def_and_named_after_the_catalogue(app_module):
    from theory_modal.catalog import PROCESSORS

    source = (ROOT / "theory_modal" / "app.py").read_text()
    names = {n for p in PROCESSORS for n in (p.chat_function, p.stream_function)}
    assert names == set(app_module.FUNCTIONS)
    for name in names:  # `grep "def litellm_chat"` finds it; async: a cancelled input is one asyncio task
        assert f"\nasync def {name}(payload: dict)" in source


def test_litellm_functions_use_the_locked_image_and_mock_functions_the_image_without_litellm(app_module):
    f = app_module.FUNCTIONS
    litellm_image = synchronizer._translate_in(app_module.litellm_image)
    mock_image = synchronizer._translate_in(app_module.mock_image)
    assert _config(f["litellm_chat"])["image"] is litellm_image and _config(f["litellm_stream"])["image"] is litellm_image
    assert _config(f["mock_chat"])["image"] is mock_image and _config(f["mock_stream"])["image"] is mock_image

    import modal

    base = [c for layer in _image_layers(modal.Image.debian_slim(python_version="3.11")) for c in layer]
    litellm_layers = [c for layer in _image_layers(app_module.litellm_image) for c in layer]
    assert litellm_layers[: len(base)] == base  # Modal's own base image (it upgrades pip/uv: not ours to pin)
    installs = [c for c in litellm_layers[len(base):] if "pip install" in c]
    assert installs == ["RUN python -m pip install -r /.requirements.txt --require-hashes --no-deps"], installs
    assert any("LITELLM_LOCAL_MODEL_COST_MAP" in c and "True" in c for c in litellm_layers)
    mock_layers = [c for layer in _image_layers(app_module.mock_image) for c in layer]
    assert mock_layers[: len(base)] == base
    # the mock image installs its hash lock (runtime dependencies and the OpenTelemetry export packages): no litellm
    assert [c for c in mock_layers[len(base):] if "pip" in c] == [
        "RUN python -m pip install -r /.requirements.txt --require-hashes --no-deps"], mock_layers
    assert not any("litellm" in c.lower() for c in mock_layers[len(base):]), mock_layers
    assert "litellm" not in app_module.MOCK_LOCK.read_text()
    # without these the containers fail with ModuleNotFoundError
    for image in (litellm_image, mock_image):
        assert image._added_python_source_set == frozenset({"providers", "theory_modal"})


def test_litellm_pin_in_the_image_matches_the_lock():
    """The image installs the very litellm the hash lock pins (pyproject.toml only gives ranges)."""
    lock = (ROOT / "requirements.lock").read_text()
    image = (ROOT / "requirements" / "litellm-image.lock").read_text()
    pin = re.search(r"^litellm==(\S+) ", lock, flags=re.M).group(1)
    assert f"\nlitellm=={pin} " in image


@pytest.mark.parametrize(("image", "lock", "path"), [
    ("litellm_image", "LITELLM_LOCK", "litellm-image.lock"),
    ("mock_image", "MOCK_LOCK", "mock-image.lock"),  # runtime dependencies + the OpenTelemetry SDK and exporter
])
def test_each_image_installs_exactly_its_committed_hash_lock(app_module, image, lock, path):
    cl = _closure(getattr(app_module, image))
    pip_layer = _closure(cl["base_image"])  # the layer under the source mount is env; under it, the install
    while "dockerfile_function" in pip_layer and "requirements_txt" not in pip_layer["dockerfile_function"].__code__.co_freevars:
        pip_layer = _closure(list(pip_layer["base_images"].values())[0])
    spec = pip_layer["dockerfile_function"]("2025.06")
    assert spec.context_files == {"/.requirements.txt": str(getattr(app_module, lock))}
    assert getattr(app_module, lock) == ROOT / "requirements" / path


def test_nothing_under_testing_and_only_python_files_are_mounted(app_module):
    for image in (app_module.litellm_image, app_module.mock_image):
        files = _mounted_files(image)
        assert "/root/theory_modal/app.py" in files and "/root/providers/__init__.py" in files
        assert not [p for p in files if "/testing/" in p], "test tools (emulator, fake server) must not ship"
        assert all(p.endswith(".py") for p in files)
    # ... and the sources left out are exactly the testing package
    expected = sorted(
        "/root/" + str(p.relative_to(ROOT))
        for pkg in ("providers", "theory_modal")
        for p in (ROOT / pkg).rglob("*.py")
        if "testing" not in p.relative_to(ROOT).parts and "__pycache__" not in p.parts
    )
    assert _mounted_files(app_module.mock_image) == expected


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


_WARM_PROBE = (
    "import json, os, sys, threading\n"
    "import modal\n"
    "modal.is_local = lambda: False  # as inside a container\n"
    "import theory_modal.app\n"
    "links = []\n"
    "for fd in os.listdir('/proc/self/fd'):\n"
    "    try: links.append(os.readlink(f'/proc/self/fd/{fd}'))\n"
    "    except OSError: pass\n"
    "enc = list(sys.modules['tiktoken.registry'].ENCODINGS) if 'tiktoken.registry' in sys.modules else []\n"
    "print(json.dumps({'litellm': 'litellm' in sys.modules, 'encodings': enc,\n"
    "                  'threads': [t.name for t in threading.enumerate()],\n"
    "                  'sockets': [l for l in links if l.startswith('socket')]}))\n"
)


def test_litellm_containers_warm_the_tokenizer_at_import_leaving_no_thread_or_socket():
    """Before the memory snapshot: litellm imported and its tokenizer loaded, and nothing that must differ
    per container (threads, sockets) created."""
    got = _import_in_subprocess({"THEORY_MODAL_IMAGE": "litellm"}, _WARM_PROBE)
    assert got["litellm"] is True and got["encodings"], got
    assert got["threads"] == ["MainThread"] and got["sockets"] == []


def test_mock_containers_never_import_litellm():
    got = _import_in_subprocess({"THEORY_MODAL_IMAGE": "mock"}, _WARM_PROBE)
    assert got["litellm"] is False and got["threads"] == ["MainThread"]
