"""The emulator fixtures as a pytest plugin: another service's suite uses them with no import and no conftest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = '''
import os
import modal

app = modal.App("plugin-user-app")


@app.function(secrets=[modal.Secret.from_name("svc-secret")])
def double(x: int) -> tuple:
    return 2 * x, os.environ.get("SVC_FLAG")
'''

SUITE = '''
import modal


def test_uses_the_emulator_with_no_import(modal_emulator, modal_env, request):
    assert modal_env["MODAL_SERVER_URL"] == modal_emulator.url
    assert "theory_modal_emulator" in [name for name, _ in request.config.pluginmanager.list_name_plugin()]
    modal_emulator.deploy(APP_FILE)
    assert modal.Function.from_name("plugin-user-app", "double").remote(21) == (42, "on")
'''

CONFTEST = '''
import pytest


@pytest.fixture(scope="session")
def modal_emulator_secrets():
    return {"svc-secret": {"SVC_FLAG": "on"}}
'''


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "PYTEST_"))}
    env.update(HOME=str(tmp_path), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def _write_suite(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_service.py").write_text(
        f"APP_FILE = {str(tmp_path / 'app.py')!r}\n" + textwrap.dedent(SUITE)
    )


@pytest.mark.slow
def test_a_foreign_suite_gets_modal_emulator_and_modal_env_from_the_entry_point(tmp_path):
    _write_suite(tmp_path)
    r = _pytest(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout


def test_without_the_plugin_the_fixtures_are_unknown(tmp_path):
    """Proves the fixtures above come from the entry point, not from something else on the path."""
    _write_suite(tmp_path)
    r = _pytest(tmp_path, "-p", "no:theory_modal_emulator")
    assert r.returncode == 1
    assert "fixture 'modal_emulator' not found" in r.stdout


def test_the_plugin_costs_nothing_until_a_fixture_is_used(tmp_path):
    """Every pytest session of an environment with theory-modal loads the plugin: it must not import the server."""
    (tmp_path / "test_plain.py").write_text(
        "import sys\n"
        "def test_plain():\n"
        "    assert 'theory_modal.testing.emulator.fixtures' in sys.modules\n"
        "    assert 'theory_modal.testing.emulator.emulator' not in sys.modules\n"
        "    assert 'grpclib.server' not in sys.modules\n"
    )
    r = _pytest(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_with_a_modal_the_emulator_does_not_speak_the_fixture_names_the_extra(tmp_path):
    (tmp_path / "conftest.py").write_text(
        "import theory_modal.testing.emulator.version as v\n"
        "v.installed_modal_version = lambda: '1.7.0'\n"
    )
    (tmp_path / "test_needs_emulator.py").write_text("def test_it(modal_emulator):\n    pass\n")
    r = _pytest(tmp_path)
    assert r.returncode == 1
    assert "the modal_emulator fixture needs pip install 'theory-modal[testing]'" in r.stdout
    assert "installed modal is 1.7.0" in r.stdout
