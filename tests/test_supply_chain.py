"""Supply chain: exact pins, no known-bad litellm, no malicious .pth, a hash-locked install."""

from __future__ import annotations

import re
import site
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAD_LITELLM = re.compile(r"^1\.82\.[78]$|^1\.107\.")  # compromised 1.82.7 / 1.82.8; withdrawn, unverified 1.107.x


def _site_dirs() -> list[Path]:
    dirs = set(site.getsitepackages()) | {site.getusersitepackages()} | {p for p in sys.path if p.endswith("site-packages")}
    return [Path(d) for d in dirs if Path(d).is_dir()]


def _lock() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, flags=re.M))


@pytest.mark.parametrize("bad", ["1.82.7", "1.82.8", "1.107.0", "1.107.3"])
def test_the_bad_version_check_itself_recognises_known_bad_releases(bad):
    assert BAD_LITELLM.match(bad)


def test_installed_litellm_is_the_pinned_release_and_not_a_known_bad_one():
    installed = version("litellm")
    assert not BAD_LITELLM.match(installed), f"litellm {installed} is a known-bad release"
    assert installed == "1.110.2"
    assert version("modal") == "1.6.4"


def test_no_litellm_init_pth_in_any_site_packages():
    found = [str(p) for d in _site_dirs() for p in d.glob("*.pth") if "litellm" in p.name.lower()]
    assert found == [], f"malicious-looking .pth files (the 1.82.8 payload): {found}"


def test_lock_pins_every_package_with_hashes():
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text)
    pinned = [b for b in blocks if re.match(r"[A-Za-z0-9_.\-]+==", b)]
    assert len(pinned) > 50
    for block in pinned:
        assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_lock_agrees_with_pyproject_and_holds_no_bad_litellm():
    lock = _lock()
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    for dep in deps:
        req = Requirement(dep)
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = lock.get(req.name)
        assert pinned is not None, f"{req.name} is required by pyproject.toml but missing from requirements.lock"
        assert req.specifier.contains(pinned, prereleases=True), (
            f"{req.name}: pyproject asks {req.specifier}, lock pins {pinned}: run `make lock`"
        )
    assert not BAD_LITELLM.match(lock["litellm"])
    assert "setuptools" in lock and "wheel" in lock  # the build backend is hash-locked too


def test_ci_installs_from_the_hash_locked_file():
    assert "make test" in (ROOT / ".ci/run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements.lock" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
