"""The CLI, as a user runs it: subprocesses, exit codes, one-line errors, batch integrity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "sk-SENTINELcli0123456789"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE")) and not k.startswith("MODAL_") and k != "LLM_API_BASE"}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "absent.toml"), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "theory_modal", *args], capture_output=True, text=True,
                          env=_env(tmp_path, **env), cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)


def test_bare_run_works_on_a_fresh_machine_with_no_keys(tmp_path):
    r = cli(tmp_path, "run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "smoke reply from openai/gpt-4o-mini: Hello"
    assert "llm/litellm@1 · smoke · openai/gpt-4o-mini" in r.stderr


def test_run_json_prints_the_response_dict(tmp_path):
    r = cli(tmp_path, "run", "--ref", "llm/mock@1", "--prompt", "two words", "--json")
    assert r.returncode == 0
    resp = json.loads(r.stdout)
    assert resp["ref"] == "llm/mock@1" and resp["text"] == "mock reply to: two words"
    assert set(resp["usage"]) == {"tokens_in", "tokens_out", "latency_ms", "usd_micros"}


def test_run_stream_prints_the_text(tmp_path):
    r = cli(tmp_path, "run", "--ref", "llm/mock@1", "--prompt", "a b c", "--stream")
    assert r.returncode == 0 and r.stdout == "mock reply to: a b c\n"


def test_run_with_attachment(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    r = cli(tmp_path, "run", "--ref", "llm/mock@1", "--attach", "image=photo.png", "--json")
    assert r.returncode == 0, r.stderr
    assert "image image/png 16 bytes" in json.loads(r.stdout)["text"]


def test_mock_run_never_imports_litellm(tmp_path):
    code = ("import sys; from theory_modal.cli import main; rc = main(['run', '--ref', 'llm/mock@1']); "
            "print('LITELLM' if 'litellm' in sys.modules else 'NO-LITELLM'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("NO-LITELLM")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "--ref", "llm/nope@1"], "unknown processor ref 'llm/nope@1'; known refs: llm/litellm@1, llm/mock@1"),
        (["run", "--ref", "nope"], "malformed processor ref 'nope'"),
        (["run", "--adapter", "cloud"], "Invalid value for '--adapter'"),
        (["run", "--mode", "prod"], "Invalid value for '--mode'"),
        (["run", "--attach", "photo.jpg"], "--attach expects name=path"),
        (["run", "--attach", "img=missing.png"], "no such file"),
        (["run", "--attach", "img=."], "is a directory"),
        (["run", "--prompt", "   "], "request.prompt must be a non-empty string"),
        (["run", "--ref", "llm/mock@1", "--temperature", "9"], "temperature' must be between 0 and 2"),
        (["run", "--no-such-flag"], "No such option"),
        (["batch", "--ref", "llm/mock@1", "--input", "absent.jsonl", "--output", "o.jsonl"], "no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, args, needle):
    r = cli(tmp_path, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_attachment_symlink_out_of_the_working_tree_exits_2(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "private.txt").write_text("secret")
    (work / "notes.txt").symlink_to(tmp_path / "private.txt")
    r = subprocess.run([sys.executable, "-m", "theory_modal", "run", "--ref", "llm/mock@1", "--attach", "n=notes.txt"],
                       capture_output=True, text=True, env=_env(tmp_path), cwd=work, timeout=60)
    assert r.returncode == 2 and "outside the working tree" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["--model", "has space"], "request.model must be a model string"),
    (["--model", "bogus/x"], "unknown provider prefix 'bogus'"),
    (["--ref", "llm/mock@1", "--attach", "x=data.bin"], "unsupported type"),
    (["--ref", "llm/mock@1", "--attach", "x=lie.jpg"], "the extension says image/jpeg but the content is text/plain"),
])
def test_more_bad_input_exits_2(tmp_path, args, needle):
    (tmp_path / "data.bin").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "lie.jpg").write_text("just text")
    r = cli(tmp_path, "run", *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_prompt_over_the_context_window_exits_2(tmp_path, fake_llm):
    r = cli(tmp_path, "run", "--mode", "live", "--model", "openai/ctx-overflow", OPENAI_API_KEY="sk-test-0000000",
            OPENAI_API_BASE=fake_llm.openai_base)
    assert r.returncode == 2, r.stderr
    assert "context window" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_oversized_attachment_exits_2(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"a" * (20 * 1024 * 1024 + 1))
    r = cli(tmp_path, "run", "--ref", "llm/mock@1", "--attach", "doc=big.txt")
    assert r.returncode == 2 and "over the 20.0 MiB cap" in r.stderr


def test_provider_failure_exits_1_with_one_line(tmp_path):
    r = cli(tmp_path, "run", "--mode", "live")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: OPENAI_API_KEY missing or OpenAI unreachable."


def test_modal_adapter_without_token_exits_1_with_the_fix(tmp_path):
    r = cli(tmp_path, "run", "--ref", "llm/mock@1", "--adapter", "modal")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "error: No Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET."
    )


def test_refs_lists_processors(tmp_path):
    r = cli(tmp_path, "refs", "--json")
    assert [row["ref"] for row in json.loads(r.stdout)] == ["llm/mock@1", "llm/litellm@1"]


def test_doctor_reports_keys_without_their_values(tmp_path):
    r = cli(tmp_path, "doctor", "--json", OPENAI_API_KEY=SENTINEL, LLM_API_BASE="http://127.0.0.1:9")
    assert r.returncode == 1  # an Ollama base set on purpose that does not answer is broken
    report = json.loads(r.stdout)
    assert report["provider_keys"]["OPENAI_API_KEY"] == "set"
    assert report["provider_keys"]["ANTHROPIC_API_KEY"] == "not set"
    assert report["modal"]["token"] == "not configured"
    assert report["ollama"]["status"].startswith("does not answer")
    assert SENTINEL not in r.stdout + r.stderr


def test_doctor_sees_a_live_ollama(tmp_path, fake_llm):
    r = cli(tmp_path, "doctor", "--json", LLM_API_BASE=fake_llm.ollama_base)
    assert json.loads(r.stdout)["ollama"]["status"].startswith("answers")


# ------------------------------------------------------------------ batch: tests/batch/


# ------------------------------------------------------------------ deploy.py
def test_python_deploy_smoke_runs_every_processor_offline(tmp_path):
    r = subprocess.run([sys.executable, "deploy.py", "--mode", "smoke"], capture_output=True, text=True,
                       env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "llm/mock@1" in r.stdout and "llm/litellm@1" in r.stdout and "NO" not in r.stdout


def test_python_deploy_live_without_keys_fails_and_says_why(tmp_path):
    r = subprocess.run([sys.executable, "deploy.py", "--mode", "live"], capture_output=True, text=True,
                       env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert r.returncode == 1
    assert "OPENAI_API_KEY missing" in r.stdout


def test_emulator_subcommand_serves_until_sigterm(tmp_path):
    import signal

    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"openai-secret": {"OPENAI_API_KEY": "sk-test-0000000"}}))
    proc = subprocess.Popen([sys.executable, "-m", "theory_modal", "emulator", "--port", "0", "--secrets", str(secrets),
                             "--state-dir", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path), cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("LISTENING 127.0.0.1:"), line + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
