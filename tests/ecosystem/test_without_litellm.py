"""The thin client without LiteLLM: the mock and the core work; the litellm provider names the extra to install.

Each test runs a fresh interpreter in which ``import litellm`` fails exactly as it does when the package is not
installed (``sys.modules["litellm"] = None`` makes the import machinery refuse it and ``find_spec`` return None).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HIDE_LITELLM = "import sys; sys.modules['litellm'] = None\n"
EXTRA = "pip install 'theory-modal[litellm]'"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE")) and not k.startswith("MODAL_") and k != "LLM_API_BASE"}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "absent.toml"), NO_COLOR="1")
    return env


def _py(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_LITELLM + code], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=60)


def test_mock_provider_and_core_work_when_litellm_cannot_be_imported(tmp_path):
    r = _py(tmp_path, (
        "from providers import get_llm_provider\n"
        "reply = get_llm_provider('mock').chat('hi')\n"
        "import theory_modal.app, theory_modal.cli\n"
        "print(reply.text)\n"
    ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "mock reply to: hi"


def test_litellm_provider_without_litellm_names_the_extra(tmp_path):
    r = _py(tmp_path, (
        "from providers import get_llm_provider, MissingDependencyError\n"
        "try:\n"
        "    get_llm_provider('litellm')\n"
        "except MissingDependencyError as exc:\n"
        "    print(type(exc).__name__, exc.kind, exc.retryable, '|', exc)\n"
    ))
    assert r.returncode == 0, r.stderr
    head, message = r.stdout.strip().split(" | ")
    assert head == "MissingDependencyError missing_dependency False"
    assert EXTRA in message


def test_load_litellm_without_litellm_names_the_extra(tmp_path):
    """The lazy loader is the other way in (e.g. a provider built before litellm was removed): same message."""
    r = _py(tmp_path, (
        "from providers.litellm_provider import load_litellm\n"
        "from providers import MissingDependencyError\n"
        "try:\n"
        "    load_litellm()\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    ))
    assert r.returncode == 0, r.stderr
    assert EXTRA in r.stdout


def test_cli_run_of_the_litellm_processor_without_litellm_exits_1_with_the_fix(tmp_path):
    r = _py(tmp_path, "import sys\nfrom theory_modal.cli import main\nsys.exit(main(['run', '--json']))\n")
    assert r.returncode == 1, (r.stdout, r.stderr)
    error = json.loads(r.stderr)  # --json: one JSON object on stderr
    assert error["type"] == "MissingDependencyError" and error["kind"] == "missing_dependency"
    assert EXTRA in error["message"] and error["retryable"] is False


def test_cli_run_of_the_mock_without_litellm_works(tmp_path):
    r = _py(tmp_path, "import sys\nfrom theory_modal.cli import main\nsys.exit(main(['run', '--ref', 'llm/mock@1', '--json']))\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["text"] == "mock reply to: Hello"
