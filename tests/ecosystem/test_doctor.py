"""`theory-modal doctor` diagnoses against a real (emulated) Modal server: token, app, functions, secrets, URLs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.vendors import ollama_base
from theory_modal.doctor import mask_url

SENTINEL = "sk-SENTINELdoctor0123456789"
FUNCTIONS = ("mock_chat", "mock_stream", "litellm_chat", "litellm_stream")
APP = """
import modal
app = modal.App({name!r})
{defs}
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL")) and not k.startswith(("MODAL_", "THEORY_MODAL_"))
           and k != "LLM_API_BASE"}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "absent.toml"), NO_COLOR="1",
               LLM_API_BASE="", OLLAMA_API_BASE="")
    env.update(extra)
    return env


def doctor(tmp_path: Path, *args: str, **env: str) -> tuple[int, dict, str]:
    r = subprocess.run([sys.executable, "-m", "theory_modal", "doctor", "--json", *args], capture_output=True,
                       text=True, env=_env(tmp_path, **env), cwd=tmp_path, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout), r.stdout + r.stderr


def status(report: dict, name: str) -> str:
    return next(c["status"] for c in report["checks"] if c["name"] == name)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory) -> Iterator:
    from theory_modal.testing.emulator import ModalEmulator

    apps = tmp_path_factory.mktemp("apps")
    for name, functions in (("doc-full", FUNCTIONS), ("doc-partial", FUNCTIONS[:1])):
        defs = "".join(f"\n@app.function()\ndef {f}(payload: dict) -> dict:\n    return payload\n" for f in functions)
        (apps / f"{name}.py").write_text(textwrap.dedent(APP.format(name=name, defs=defs)))
    with ModalEmulator(secrets={"doc-secret": {"OPENAI_API_KEY": SENTINEL}},
                       state_dir=tmp_path_factory.mktemp("emu")) as emu:
        emu.deploy(apps / "doc-full.py")
        emu.deploy(apps / "doc-partial.py")
        yield emu


def test_without_a_modal_token_modal_is_a_warning_and_nothing_fails(tmp_path):
    code, report, out = doctor(tmp_path, OPENAI_API_KEY=SENTINEL)
    assert code == 0, out
    assert status(report, "modal_token") == "warn" and report["modal"]["token"] == "not configured"
    assert report["provider_keys"]["OPENAI_API_KEY"] == "set" and report["provider_keys"]["GROQ_API_KEY"] == "not set"
    assert SENTINEL not in out


@pytest.mark.slow
def test_a_rejected_token_fails(tmp_path, emulator):
    code, report, out = doctor(tmp_path, **{**emulator.client_env(), "MODAL_TOKEN_ID": "ak-bad"})
    assert code == 1
    assert status(report, "modal_token") == "fail" and report["modal"]["token"] == "rejected"
    assert "rejected the token" in out


@pytest.mark.slow
def test_an_accepted_token_and_a_deployed_app_with_every_function_pass(tmp_path, emulator):
    code, report, out = doctor(tmp_path, "--app-name", "doc-full", **emulator.client_env(),
                               THEORY_MODAL_SECRETS="doc-secret")
    assert code == 0, out
    assert report["ok"] is True
    assert report["modal"]["token"] == "accepted" and report["modal"]["deployed"] is True
    assert report["modal"]["functions"] == {f: True for f in FUNCTIONS}
    assert status(report, "modal_secrets") == "ok"
    assert report["modal"]["secrets"]["in_environment"] == ["doc-secret"]
    assert SENTINEL not in out


@pytest.mark.slow
def test_an_app_that_is_not_deployed_fails_with_the_fix(tmp_path, emulator):
    code, report, out = doctor(tmp_path, **emulator.client_env(), THEORY_MODAL_APP="never-deployed")
    assert code == 1
    assert report["modal"]["deployed"] is False and status(report, "modal_app") == "fail"
    assert "app 'never-deployed' is not deployed" in out and "modal deploy deploy.py" in out


@pytest.mark.slow
def test_a_deployed_app_missing_functions_names_them(tmp_path, emulator):
    code, report, out = doctor(tmp_path, "--app-name", "doc-partial", **emulator.client_env())
    assert code == 1
    assert report["modal"]["functions"] == {"mock_chat": True, **{f: False for f in FUNCTIONS[1:]}}
    assert "lacks mock_stream, litellm_chat, litellm_stream" in out


@pytest.mark.slow
def test_a_secret_named_at_deploy_time_that_does_not_exist_fails(tmp_path, emulator):
    code, report, out = doctor(tmp_path, "--app-name", "doc-full", **emulator.client_env(),
                               THEORY_MODAL_SECRETS="doc-secret,absent-secret")
    assert code == 1 and status(report, "modal_secrets") == "fail"
    assert "absent-secret" in out and "modal secret create absent-secret" in out


@pytest.mark.slow
def test_an_unreachable_modal_server_fails_within_the_bound(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, report, out = doctor(tmp_path, "--timeout", "1", MODAL_SERVER_URL=f"http://127.0.0.1:{port}",
                               MODAL_TOKEN_ID="ak-x", MODAL_TOKEN_SECRET="as-y")
    assert code == 1 and status(report, "modal_server") == "fail"
    assert "did not answer within 1 s" in out


def test_base_url_overrides_are_shown_with_credentials_masked(tmp_path):
    code, report, out = doctor(
        tmp_path,
        OPENAI_API_BASE=f"https://user:{SENTINEL}@proxy.internal/v1",
        OPENAI_BASE_URL=f"https://proxy.internal/v1?api_key={SENTINEL}",
    )
    assert SENTINEL not in out
    assert report["base_urls"]["OPENAI_API_BASE"] == "https://***@proxy.internal/v1"
    assert report["base_urls"]["OPENAI_BASE_URL"].startswith("https://proxy.internal/v1?api_key=")
    assert report["base_urls"]["LLM_API_BASE"] is None
    assert status(report, "base_url:OPENAI_API_BASE") == "ok"


def test_a_malformed_base_url_fails(tmp_path):
    code, report, out = doctor(tmp_path, OPENAI_API_BASE="localhost:11434")
    assert code == 1 and status(report, "base_url:OPENAI_API_BASE") == "fail"
    assert "not an http(s) URL" in out


def test_ollama_api_base_is_honoured_and_llm_api_base_wins_over_it(tmp_path, fake_llm):
    code, report, _ = doctor(tmp_path, OLLAMA_API_BASE=fake_llm.ollama_base)
    assert code == 0 and report["ollama"]["from"] == "OLLAMA_API_BASE"
    assert report["ollama"]["status"].startswith("answers")
    code, report, _ = doctor(tmp_path, OLLAMA_API_BASE="http://127.0.0.1:9", LLM_API_BASE=fake_llm.ollama_base)
    assert code == 0 and report["ollama"]["from"] == "LLM_API_BASE"


def test_an_ollama_base_set_on_purpose_that_does_not_answer_fails(tmp_path):
    code, report, out = doctor(tmp_path, OLLAMA_API_BASE="http://127.0.0.1:9")
    assert code == 1 and status(report, "ollama") == "fail" and "does not answer" in out


def test_the_text_report_has_one_line_per_check_and_exits_like_json(tmp_path):
    r = subprocess.run([sys.executable, "-m", "theory_modal", "doctor"], capture_output=True, text=True,
                       env=_env(tmp_path, OLLAMA_API_BASE="http://127.0.0.1:9"), cwd=tmp_path, timeout=60)
    assert r.returncode == 1
    assert any(line.startswith("FAIL  ollama: ") for line in r.stdout.splitlines())
    assert any(line.startswith("warn  modal_token: ") for line in r.stdout.splitlines())


def test_ollama_base_precedence_in_process():
    assert ollama_base({}) == ("http://localhost:11434", "default")
    assert ollama_base({"OLLAMA_API_BASE": "http://a:1"}) == ("http://a:1", "OLLAMA_API_BASE")
    assert ollama_base({"OLLAMA_API_BASE": "http://a:1", "LLM_API_BASE": "http://b:2"}) == ("http://b:2", "LLM_API_BASE")
    assert ollama_base({"OLLAMA_API_BASE": "http://a:1", "LLM_API_BASE": "  "}) == ("http://a:1", "OLLAMA_API_BASE")


SAFE = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N")), min_size=6, max_size=20)


@settings(max_examples=200, deadline=None)
@given(user=SAFE, password=SAFE, host=st.from_regex(r"[a-z]{1,10}(\.[a-z]{2,5})?", fullmatch=True),
       path=st.from_regex(r"(/[a-z0-9]{0,6}){0,3}", fullmatch=True), scheme=st.sampled_from(["http", "https"]))
def test_mask_url_never_shows_userinfo(user, password, host, path, scheme):
    masked = mask_url(f"{scheme}://{user}:{password}@{host}{path}")
    assert masked == f"{scheme}://***@{host}{path}"
    assert password not in masked and user not in masked.replace(host, "").replace(path, "")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_mask_url_takes_any_text_without_raising(text):
    assert isinstance(mask_url(text), str)
