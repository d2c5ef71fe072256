"""`theory-modal emulator` / `python -m theory_modal.testing.emulator`: real options, help, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory_modal.testing.emulator.cli import SecretsFileError, load_secrets

EXPORTED = ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_CONFIG_PATH", "MODAL_ENVIRONMENT")
ENTRY_POINTS = {
    "theory-modal emulator": [sys.executable, "-m", "theory_modal", "emulator"],
    "python -m theory_modal.testing.emulator": [sys.executable, "-m", "theory_modal.testing.emulator"],
}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(HOME=str(tmp_path), NO_COLOR="1", COLUMNS="120")
    return env


def _run(tmp_path: Path, argv: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=60)


@pytest.mark.parametrize("argv", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_help_lists_the_real_options_the_secrets_format_and_the_variables(tmp_path, argv):
    r = _run(tmp_path, argv, "--help")
    assert r.returncode == 0, r.stderr
    for option in ("--port", "--secrets FILE", "--state-dir DIR", "--max-containers"):
        assert option in r.stdout
    assert '{"openai-secret": {"OPENAI_API_KEY": "sk-test"}' in r.stdout
    for name in EXPORTED:
        assert name in r.stdout
    assert "To go back to real Modal: unset MODAL_SERVER_URL" in " ".join(r.stdout.split())


BAD_FILES = {
    "missing": (None, "no such file"),
    "directory": ("DIR", "is a directory"),
    "not json": ("{not json", "not valid JSON (line 1"),
    "a list": ("[1, 2]", "the top level is a JSON array"),
    "a secret that is a string": ('{"s": "sk-not-an-object"}', "secret 's' is a JSON string"),
    "a value that is a number": ('{"s": {"K": 5}}', "'s'.'K' is a JSON number, expected a string"),
    "an empty variable name": ('{"s": {"": "v"}}', "cannot be an environment variable"),
    "not utf-8": (b"\xff\xfe{}", "not UTF-8 text"),
}


@pytest.mark.parametrize("argv", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_secrets_file_exits_2_with_one_line_naming_the_file(tmp_path, argv, case):
    content, needle = BAD_FILES[case]
    path = tmp_path / "secrets.json"
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    r = _run(tmp_path, argv, "--secrets", str(path), "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: --secrets {path}: ") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert "sk-not-an-object" not in r.stderr  # a value is never echoed
    assert not (tmp_path / "state").exists()  # nothing started


@pytest.mark.parametrize("args,needle", [
    (["--port", "70000"], "Invalid value for '--port'"),
    (["--max-containers", "0"], "Invalid value for '--max-containers'"),
    (["--nope"], "No such option"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, args, needle):
    for argv in ENTRY_POINTS.values():
        r = _run(tmp_path, argv, *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_an_unreadable_secrets_file_is_named(tmp_path, monkeypatch):
    """Root reads any file, so the permission branch is driven directly."""
    path = tmp_path / "secrets.json"
    path.write_text("{}")

    def deny(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", deny)
    with pytest.raises(SecretsFileError, match=r"--secrets .*secrets.json: permission denied"):
        load_secrets(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
SECRETS = st.dictionaries(st.text(max_size=8), st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3),
                          max_size=3)


@settings(max_examples=150, deadline=None)
@given(data=JSON | SECRETS)
def test_load_secrets_returns_the_mapping_or_one_line_naming_the_file_and_never_a_value(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("s") / "secrets.json"
    path.write_text(json.dumps(data))
    try:
        loaded = load_secrets(path)
    except SecretsFileError as exc:
        message = exc.format_message()
        assert message.startswith(f"--secrets {path}: ") and "\n" not in message
        if isinstance(data, dict):
            for values in data.values():
                for value in (values.values() if isinstance(values, dict) else []):
                    if isinstance(value, str) and len(value) >= 6:
                        assert value not in message
        assert exc.exit_code == 2
    else:
        assert loaded == data
        assert all(isinstance(v, str) for values in loaded.values() for v in values.values())
        assert all(k and "=" not in k and "\x00" not in k for values in loaded.values() for k in values)


@pytest.mark.slow
@pytest.mark.parametrize("argv", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_startup_prints_every_variable_to_export_and_how_to_go_back(tmp_path, argv):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"openai-secret": {"OPENAI_API_KEY": "sk-test-0000000"}}))
    proc = subprocess.Popen([*argv, "--secrets", str(secrets), "--state-dir", str(tmp_path / "state"),
                             "--max-containers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path), cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("LISTENING 127.0.0.1:"), line + proc.stderr.read()
        port = line.strip().rsplit(":", 1)[1]
        seen = []
        while not any(s.startswith("# back to real Modal") for s in seen):
            seen.append(proc.stderr.readline().strip())
        export = next(s for s in seen if s.startswith("export "))
        pairs = dict(p.split("=", 1) for p in export.removeprefix("export ").split())
        assert tuple(pairs) == EXPORTED
        assert pairs["MODAL_SERVER_URL"] == f"http://127.0.0.1:{port}"
        assert pairs["MODAL_TOKEN_ID"] == "ak-emulator" and pairs["MODAL_ENVIRONMENT"] == "main"
        assert seen[-1] == "# back to real Modal: unset " + " ".join(EXPORTED)
        assert "sk-test-0000000" not in "\n".join(seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
