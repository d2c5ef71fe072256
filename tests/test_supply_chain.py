"""Supply chain: library ranges in pyproject.toml, exact hashed pins in the lock, no known-bad litellm, no malicious
.pth, a hash-locked install."""

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


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_installed_litellm_and_modal_are_the_locked_releases_and_litellm_not_a_known_bad_one():
    installed = version("litellm")
    assert not BAD_LITELLM.match(installed), f"litellm {installed} is a known-bad release"
    assert installed == _lock()["litellm"]
    assert version("modal") == _lock()["modal"]


def test_the_thin_client_has_ranges_and_no_litellm():
    """`pip install theory-modal` must coexist with a service's own modal 1.x and must not pull in LiteLLM."""
    from packaging.requirements import Requirement

    core = [Requirement(d) for d in _project()["dependencies"]]
    names = {r.name for r in core}
    assert "litellm" not in names
    assert {"modal", "jsonschema", "click", "rich"} <= names
    for req in core:
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{req}: exact pins belong in the lock"
    modal = next(r for r in core if r.name == "modal")
    assert modal.specifier.contains("1.6.4") and modal.specifier.contains("1.2.0")
    assert not modal.specifier.contains("2.0.0") and not modal.specifier.contains("0.77.0")


@pytest.mark.parametrize("bad", ["1.82.7", "1.82.8", "1.107.0", "1.107.5"])
def test_the_litellm_extra_excludes_every_known_bad_release(bad):
    from packaging.requirements import Requirement

    (dep,) = _project()["optional-dependencies"]["litellm"]
    req = Requirement(dep)
    assert req.name == "litellm"
    assert not req.specifier.contains(bad)
    assert req.specifier.contains("1.110.2") and req.specifier.contains("1.82.9")
    assert not req.specifier.contains("2.0.0")


def test_the_testing_extra_pins_the_modal_the_emulator_speaks_and_what_it_imports():
    from packaging.requirements import Requirement

    from theory_modal.testing.emulator.version import PINNED_MODAL_VERSION

    testing = {Requirement(d).name: Requirement(d) for d in _project()["optional-dependencies"]["testing"]}
    assert str(testing["modal"].specifier) == f"=={PINNED_MODAL_VERSION}"
    assert {"pytest", "grpclib"} <= set(testing)


def test_the_pytest_plugin_entry_point_names_the_fixtures_module():
    plugins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert plugins == {"theory_modal_emulator": "theory_modal.testing.emulator.fixtures"}


def test_make_lock_resolves_every_extra():
    """The lock pins everything make, CI and the image install: every extra, not only the thin client."""
    makefile = (ROOT / "Makefile").read_text()
    lock_rule = makefile[makefile.index("\nlock:"):].split("\n\n")[0]
    for extra in _project()["optional-dependencies"]:
        assert f"--extra {extra}" in lock_rule, f"`make lock` leaves out the {extra!r} extra"


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

    project = _project()
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
