"""`theory-modal run` with the habits simonw/llm users have: positional prompt, stdin, -o key=value, --json errors,
and input errors decided before LiteLLM is imported."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from theory_modal.cli import main
from theory_modal.cli_input import CliInputError, parse_options, read_prompt

SENTINEL = "sk-SENTINELrun0123456789"
ERROR_KEYS = {"type", "kind", "message", "retryable"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE")) and not k.startswith("MODAL_") and k != "LLM_API_BASE"}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "absent.toml"), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def run(tmp_path: Path, *args: str, stdin: str | bytes | None = None, **env: str) -> subprocess.CompletedProcess:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run([sys.executable, "-m", "theory_modal", "run", *args], input=data if data is not None else b"",
                          capture_output=True, env=_env(tmp_path, **env), cwd=tmp_path, timeout=120)


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode()


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode()


# ------------------------------------------------------------------ prompt: argument, stdin, "-"
def test_a_positional_prompt(tmp_path):
    r = run(tmp_path, "Hi there", "--ref", "llm/mock@1")
    assert r.returncode == 0 and out(r) == "mock reply to: Hi there\n", err(r)


def test_stdin_is_the_prompt_when_none_is_given(tmp_path):
    r = run(tmp_path, "--ref", "llm/mock@1", stdin="from a pipe\n")
    assert r.returncode == 0 and out(r) == "mock reply to: from a pipe\n", err(r)


@pytest.mark.parametrize("args", [["-"], ["-p", "-"], ["--prompt", "-"]])
def test_dash_means_stdin(tmp_path, args):
    r = run(tmp_path, *args, "--ref", "llm/mock@1", stdin="dash text")
    assert r.returncode == 0 and out(r) == "mock reply to: dash text\n", err(r)


def test_empty_stdin_and_no_prompt_is_the_default_prompt(tmp_path):
    """`make smoke` in CI has an empty stdin: it still runs the default job."""
    r = run(tmp_path, stdin="")
    assert r.returncode == 0 and out(r) == "smoke reply from openai/gpt-4o-mini: Hello\n", err(r)


@pytest.mark.parametrize("args,stdin,needle", [
    (["-"], "", "stdin was empty"),
    (["-"], b"\xff\xfe\xfa", "stdin is not UTF-8"),
    (["one", "-p", "two"], "", "the prompt is given twice"),
    (["-o", "temperature"], "", "--option expects key=value"),
    (["-o", "=3"], "", "is not an option name"),
    (["-o", "temperature=0.2", "--temperature", "0.3"], "", "option 'temperature' is given twice"),
    (["-o", "temperature=hot"], "", "temperature"),
    (["-o", "no_such=1"], "", "unknown option"),
])
def test_prompt_and_option_mistakes_exit_2_with_one_line(tmp_path, args, stdin, needle):
    r = run(tmp_path, *args, "--ref", "llm/mock@1", stdin=stdin)
    assert r.returncode == 2, (out(r), err(r))
    lines = err(r).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err(r)
    assert "Traceback" not in err(r) and out(r) == ""


def test_options_reach_the_provider_typed(tmp_path, fake_llm):
    r = run(tmp_path, "typed", "--mode", "live", "--model", "openai/gpt-4o-mini", "-o", "temperature=0.5",
            "-o", "max-tokens=7", "-o", 'stop=["END"]', "-o", "seed=42", "-o", "system=42",
            OPENAI_API_KEY="sk-test-0000000", OPENAI_API_BASE=fake_llm.openai_base)
    assert r.returncode == 0, err(r)
    body = next(req["body"] for req in fake_llm.requests if req["path"].endswith("/chat/completions"))
    assert body["temperature"] == 0.5 and isinstance(body["temperature"], float)
    assert body["max_tokens"] == 7 and body["stop"] == ["END"] and body["seed"] == 42
    assert body["messages"][0] == {"role": "system", "content": "42"}  # a text option stays text


# ------------------------------------------------------------------ --json errors
@pytest.mark.parametrize("args,code,kind", [
    (["--model", "has space"], 2, "invalid_request"),
    (["--ref", "llm/nope@1"], 2, "invalid_request"),
    (["--no-such-flag"], 2, "invalid_request"),
    (["-o", "temperature=9"], 2, "invalid_request"),
    (["--mode", "live"], 1, "credentials"),
])
def test_json_errors_are_one_object_on_stderr(tmp_path, args, code, kind):
    r = run(tmp_path, "--json", *args, OPENAI_API_KEY="")
    assert r.returncode == code, err(r)
    assert out(r) == ""
    obj = json.loads(err(r))  # exactly one JSON document, nothing else
    assert set(obj) == ERROR_KEYS and obj["kind"] == kind and obj["retryable"] is False
    assert obj["message"] and "\n" not in obj["message"]


def test_json_error_never_holds_a_key(tmp_path, fake_llm):
    r = run(tmp_path, "--json", "--mode", "live", "--model", "openai/error-401", OPENAI_API_KEY=SENTINEL,
            OPENAI_API_BASE=fake_llm.openai_base)
    assert r.returncode == 1
    obj = json.loads(err(r))
    assert obj["kind"] == "credentials" and SENTINEL not in err(r)


# ------------------------------------------------------------------ before litellm
PROBE = (
    "import sys, io\n"
    "from theory_modal.cli import main\n"
    "sys.stdin = io.TextIOWrapper(io.BytesIO(b''))\n"
    "rc = main(sys.argv[1:])\n"
    "print('LITELLM-LOADED' if 'litellm' in sys.modules else 'LITELLM-NOT-LOADED')\n"
    "sys.exit(rc)\n"
)


@pytest.mark.parametrize("args,code,needle", [
    (["--model", "has space"], 2, "model"),
    (["--model", "bogus/x"], 2, "bogus"),
    (["--model", "bogus/x", "--adapter", "modal"], 2, "bogus"),
    (["--mode", "live"], 1, "OPENAI_API_KEY missing or OpenAI unreachable."),
    (["--mode", "live", "--model", "anthropic/claude-3-5-haiku-latest"], 1, "ANTHROPIC_API_KEY missing"),
    (["--mode", "live", "--model", "gemini/gemini-2.0-flash"], 1, "GEMINI_API_KEY (or GOOGLE_API_KEY) missing"),
    (["-o", "temperature=9"], 2, "temperature"),
    (["-", "--mode", "live"], 2, "stdin was empty"),
])
def test_input_errors_are_decided_before_litellm_is_imported(tmp_path, args, code, needle):
    r = subprocess.run([sys.executable, "-c", PROBE, "run", *args], capture_output=True, text=True,
                       env=_env(tmp_path), cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stdout.strip() == "LITELLM-NOT-LOADED"


# ------------------------------------------------------------------ OLLAMA_API_BASE
def test_ollama_api_base_is_honoured(tmp_path, fake_llm):
    r = run(tmp_path, "hi", "--mode", "live", "--model", "ollama_chat/qwen2.5:0.5b", "--json",
            OLLAMA_API_BASE=fake_llm.ollama_base)
    assert r.returncode == 0, err(r)
    assert json.loads(out(r))["text"] == "echo: hi"
    assert any(req["path"].startswith("/api/chat") for req in fake_llm.requests)


def test_llm_api_base_wins_over_ollama_api_base(tmp_path, fake_llm):
    r = run(tmp_path, "hi", "--mode", "live", "--model", "ollama_chat/qwen2.5:0.5b",
            OLLAMA_API_BASE="http://127.0.0.1:9", LLM_API_BASE=fake_llm.ollama_base)
    assert r.returncode == 0, err(r)
    r = run(tmp_path, "hi", "--mode", "live", "--model", "ollama_chat/qwen2.5:0.5b",
            OLLAMA_API_BASE=fake_llm.ollama_base, LLM_API_BASE="http://127.0.0.1:9")
    assert r.returncode == 1 and "Ollama unreachable" in err(r)


# ------------------------------------------------------------------ --mode default
def test_help_says_the_mode_default_per_adapter_and_the_summary_shows_the_mode(tmp_path):
    r = run(tmp_path, "--help")
    assert "smoke on the local adapter, live on the modal adapter" in " ".join(out(r).split())
    r = run(tmp_path, "x", "--ref", "llm/mock@1")
    assert "llm/mock@1 · smoke · mock" in err(r)


def test_the_mode_default_follows_the_adapter():
    import click

    from theory_modal.cli import run as run_command

    for args, mode in ((["--adapter", "modal"], "live"), ([], "smoke"), (["--adapter", "modal", "--mode", "smoke"],
                                                                          "smoke"), (["--mode", "live"], "live")):
        ctx = run_command.make_context("run", list(args), resilient_parsing=False)
        assert ctx.params["mode"] == mode, args
        with pytest.raises(click.UsageError):
            run_command.make_context("run", ["--mode", "prod"])


# ------------------------------------------------------------------ properties
def test_a_closed_stdin_is_an_empty_one(tmp_path):
    """CI may start `make smoke` with descriptor 0 closed: sys.stdin is then None."""
    r = subprocess.run(f"{sys.executable} -m theory_modal run --ref llm/mock@1 <&-", shell=True, capture_output=True,
                       text=True, env=_env(tmp_path), cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and r.stdout == "mock reply to: Hello\n", r.stderr
    r = subprocess.run(f"{sys.executable} -m theory_modal run - --ref llm/mock@1 <&-", shell=True, capture_output=True,
                       text=True, env=_env(tmp_path), cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "stdin was empty" in r.stderr


def test_read_prompt_rules():
    tty = dict(stdin=io.BytesIO(b"ignored"), stdin_is_tty=True)
    assert read_prompt("a", None, **tty) == "a" and read_prompt(None, "b", **tty) == "b"
    assert read_prompt(None, None, **tty) == "Hello"
    assert read_prompt(None, None, stdin=io.BytesIO(b"piped\r\n"), stdin_is_tty=False) == "piped"
    assert read_prompt("-", None, stdin=io.BytesIO(b"dash"), stdin_is_tty=True) == "dash"
    assert read_prompt("given", None, stdin=io.BytesIO(b"not read"), stdin_is_tty=False) == "given"


KEYS = st.one_of(st.sampled_from(["temperature", "max_tokens", "max-tokens", "top_p", "seed", "stop", "system",
                                  "presence_penalty", "response_format"]), st.text(max_size=12))
VALUES = st.one_of(
    st.text(max_size=20),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.lists(st.text(max_size=5), max_size=3).map(json.dumps),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2).map(json.dumps),
    st.sampled_from(["true", "null", "NaN", "Infinity", "-Infinity", "[", "{}", '"quoted"', "1e999"]),
)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=4))
def test_parse_options_returns_typed_values_or_a_one_line_error(items):
    """Invariant: either every item becomes a key with a JSON-typed (or raw text) value, or CliInputError."""
    args = [f"{k}={v}" for k, v in items]
    try:
        parsed = parse_options(args)
    except CliInputError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert len(parsed) == len(items)
    for arg in args:
        key, _, raw = arg.partition("=")  # a key cannot hold "=": the first one splits
        value = parsed[key.strip().replace("-", "_")]
        try:
            as_json = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError:
            assert value == raw
        else:
            assert value == as_json or value == raw
            assert not (isinstance(value, float) and value != value)  # never a NaN


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEYS, value=VALUES)
def test_run_with_any_option_exits_0_or_2_with_one_line_and_no_traceback(capsys, monkeypatch, key, value):
    """Invariant: `run -o key=value` on the mock never shows a traceback; it answers (0) or says why not (2)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code = main(["run", "--ref", "llm/mock@1", "-o", f"{key}={value}", "prompt"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    if key == "mock_error":
        assert code in (0, 1, 2)
    else:
        assert code in (0, 2), captured.err
    if code:
        assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("error: ")
    else:
        assert captured.out.startswith("mock reply to: prompt")
