"""The images' locks: requirements.lock filtered to each image's closure, every package pinned with hashes."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
IMAGE_LOCK = ROOT / "requirements" / "litellm-image.lock"
MOCK_LOCK = ROOT / "requirements" / "mock-image.lock"
#: What a container needs to send spans to an OTLP/HTTP collector (providers.telemetry_export).
OTEL_EXPORT = {"opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "opentelemetry-proto"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, str]:
    return {_norm(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, flags=re.M)}


def test_committed_image_lock_equals_a_fresh_filter_of_requirements_lock():
    r = subprocess.run([sys.executable, "requirements/image_lock.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_image_lock_pins_every_package_with_hashes_at_the_project_lock_versions_and_excludes_modal():
    text = IMAGE_LOCK.read_text()
    image, project = _pins(text), _pins((ROOT / "requirements.lock").read_text())
    assert image["litellm"] == "1.110.2" and "jsonschema" in image
    assert "modal" not in image and "grpclib" not in image  # Modal brings its own client into containers
    assert all(project[name] == version for name, version in image.items())
    for lock in (IMAGE_LOCK, MOCK_LOCK):
        text = lock.read_text()
        image = _pins(text)
        assert all(project[name] == version for name, version in image.items())
        blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text) if re.match(r"[A-Za-z0-9_.\-]+==", b)]
        assert len(blocks) == len(image)
        for block in blocks:
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_both_images_can_export_spans_over_otlp_http_and_neither_carries_grpc():
    """Without the SDK and exporter in the image, container telemetry is a silent no-op in a real deployment."""
    litellm, otel = _pins(IMAGE_LOCK.read_text()), _pins(MOCK_LOCK.read_text())
    assert OTEL_EXPORT <= set(litellm) and OTEL_EXPORT <= set(otel)
    assert set(otel) <= set(litellm)  # the LiteLLM image's lock is a superset: one version of each package
    for image in (litellm, otel):
        assert not {"grpcio", "opentelemetry-exporter-otlp-proto-grpc", "modal", "grpclib"} & set(image)
    assert "litellm" not in otel and "jsonschema" in otel  # the mock image: our runtime dependencies, no litellm


@pytest.mark.parametrize("lock", [IMAGE_LOCK, MOCK_LOCK], ids=lambda p: p.name)
def test_image_lock_is_closed_under_dependencies_so_no_deps_install_is_complete(lock):
    """Every requirement (markers evaluated for the image's Linux CPython 3.11) of every locked package is
    itself locked: ``pip install --no-deps --require-hashes`` then leaves nothing unresolved."""
    image = _pins(lock.read_text())
    env = {"extra": "", "sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11",
           "python_full_version": "3.11.0", "os_name": "posix", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    missing = []
    for name in image:
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                if _norm(req.name) not in image:
                    missing.append(f"{name} -> {req.name}")
    assert missing == []


def test_filter_drops_a_package_needed_only_by_an_excluded_one():
    sys.path.insert(0, str(ROOT / "requirements"))
    try:
        import image_lock
    finally:
        sys.path.pop(0)
    lock = (
        "litellm==1 \\\n    --hash=sha256:aa\n    # via theory-modal (pyproject.toml)\n"
        "jsonschema==2 \\\n    --hash=sha256:bb\n    # via theory-modal (pyproject.toml)\n"
        "modal==3 \\\n    --hash=sha256:cc\n    # via theory-modal (pyproject.toml)\n"
        "grpclib==4 \\\n    --hash=sha256:dd\n    # via modal\n"
        "idna==5 \\\n    --hash=sha256:ee\n    # via\n    #   modal\n    #   yarl\n"
        "yarl==6 \\\n    --hash=sha256:ff\n    # via litellm\n"
    )
    assert set(_pins(image_lock.image_lock(lock))) == {"litellm", "jsonschema", "idna", "yarl"}
