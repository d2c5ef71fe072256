"""Issue #11, failure by failure: each test reproduces one numbered way the old batch lost or corrupted work.

They drive the real CLI (a subprocess, or ``main()`` in-process where no signal is involved), so they failed
against the old ``batch`` command and pass against the engine in ``theory_modal/batch.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from batch_helpers import MOCK, batch_args, by_line, cli, cli_inproc, env_for, read_rows, write_jsonl

from theory_modal.testing.fake_llm import FakeLLMServer

KEY = "sk-test-batch-0000000000"


def _mock_texts(rows):
    return {row["line"]: row.get("text") for row in rows}


# ------------------------------------------------------------------ 1. resume matched results by position only
def test_1_resume_after_inserting_a_line_answers_every_line_by_its_content(tmp_path):
    prompts = [f"prompt {i}" for i in range(5)]
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": p, "id": f"id{i}"} for i, p in enumerate(prompts)])
    assert cli(tmp_path, *batch_args()).returncode == 0
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "NEW PROMPT", "id": "new"}] +
                [{"prompt": p, "id": f"id{i}"} for i, p in enumerate(prompts)])
    r = cli(tmp_path, *batch_args("--resume"))
    assert r.returncode == 0, r.stderr
    texts = sorted(row.get("text") for row in read_rows(tmp_path / "out.jsonl"))
    assert texts == sorted(f"mock reply to: {p}" for p in ["NEW PROMPT", *prompts]), "a stale reply was kept"
    assert "1 new, 5 re-run because their input changed" in r.stdout
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    assert rows[1]["text"] == "mock reply to: NEW PROMPT" and rows[1]["id"] == "new"
    for n in range(2, 7):
        assert rows[n]["text"] == f"mock reply to: prompt {n - 2}" and rows[n]["id"] == f"id{n - 2}"
    ids = [row["id"] for row in rows.values()]
    assert len(ids) == len(set(ids))


def test_1_resume_after_editing_a_prompt_reruns_that_line_and_says_so(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(4)])
    assert cli(tmp_path, *batch_args()).returncode == 0
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p0"}, {"prompt": "EDITED"}, {"prompt": "p2"}, {"prompt": "p3"}])
    r = cli(tmp_path, *batch_args("--resume"))
    assert r.returncode == 0, r.stderr
    texts = sorted(row.get("text") for row in read_rows(tmp_path / "out.jsonl"))
    assert texts == sorted(f"mock reply to: {p}" for p in ["p0", "EDITED", "p2", "p3"]), "a stale reply was kept"
    assert _mock_texts(read_rows(tmp_path / "out.jsonl")) == {
        1: "mock reply to: p0", 2: "mock reply to: EDITED", 3: "mock reply to: p2", 4: "mock reply to: p3"}
    assert "kept 3 from before" in r.stdout and "1 re-run because their input changed" in r.stdout


def test_1_resume_with_another_ref_reruns_everything_instead_of_mixing_refs(tmp_path, monkeypatch, capsys):
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(3)])
    assert cli_inproc(tmp_path, monkeypatch, capsys, *batch_args())[0] == 0
    code, _, err = cli_inproc(tmp_path, monkeypatch, capsys, *batch_args("--resume", ref="llm/litellm@1"))
    assert code == 0, err
    rows = read_rows(tmp_path / "out.jsonl")
    assert len(rows) == 3 and {row["ref"] for row in rows} == {"llm/litellm@1"}
    assert all(row["text"].startswith("smoke reply from") for row in rows)


# ------------------------------------------------------------------ 2. overwrote without asking; input == output
def test_2_existing_output_is_never_replaced_without_resume_or_overwrite(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}])
    (tmp_path / "out.jsonl").write_text('{"paid": "for"}\n')
    r = cli(tmp_path, *batch_args())
    assert r.returncode == 2
    assert "already holds results" in r.stderr and "--resume" in r.stderr and "--overwrite" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert (tmp_path / "out.jsonl").read_text() == '{"paid": "for"}\n'
    r = cli(tmp_path, *batch_args("--overwrite"))
    assert r.returncode == 0, r.stderr
    assert [row["text"] for row in read_rows(tmp_path / "out.jsonl")] == ["mock reply to: a"]


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink", "stdin"])
def test_2_output_that_is_the_input_is_refused_and_the_input_survives(tmp_path, spelling):
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    before = (tmp_path / "in.jsonl").read_bytes()
    out, inp, stdin = "in.jsonl", "in.jsonl", None
    if spelling == "dot":
        out = f"./../{tmp_path.name}/in.jsonl"
    elif spelling == "symlink":
        os.symlink("in.jsonl", tmp_path / "link.jsonl")
        out = "link.jsonl"
    elif spelling == "hardlink":
        os.link(tmp_path / "in.jsonl", tmp_path / "hard.jsonl")
        out = "hard.jsonl"
    elif spelling == "stdin":
        inp, stdin = "-", open(tmp_path / "in.jsonl", "rb")
    try:
        for extra in ((), ("--resume",), ("--overwrite",)):
            r = cli(tmp_path, *batch_args(*extra, inp=inp, out=out), stdin=stdin)
            assert r.returncode == 2, (extra, r.stdout, r.stderr)
            assert "is the input file" in r.stderr
            assert (tmp_path / "in.jsonl").read_bytes() == before
            if stdin is not None:
                stdin.seek(0)
    finally:
        if stdin is not None:
            stdin.close()


# ------------------------------------------------------------------ 3. two batches on one output
def test_3_a_second_batch_on_the_same_output_is_refused_while_the_first_runs(tmp_path):
    n = 12
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"item {i}"} for i in range(n)])
    args = batch_args("--mode", "live", "--concurrency", "1", ref="llm/litellm@1")
    out = tmp_path / "out.jsonl"
    with FakeLLMServer(latency=0.25) as srv:
        env = dict(OPENAI_API_KEY=KEY, OPENAI_API_BASE=srv.openai_base)
        first = subprocess.Popen([sys.executable, "-m", "theory_modal", *args], env=env_for(tmp_path, **env),
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 1):
                time.sleep(0.02)
            for extra in ((), ("--resume",), ("--overwrite",)):
                second = cli(tmp_path, *args, *extra, **env)
                assert second.returncode == 2, (extra, second.stdout, second.stderr)
                assert "in use by another batch" in second.stderr
            stdout, stderr = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    assert first.returncode == 0, stderr
    rows = by_line(read_rows(out))
    assert sorted(rows) == list(range(1, n + 1))
    assert all(rows[i + 1]["text"] == f"echo: item {i}" for i in range(n))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ------------------------------------------------------------------ 4. a short write reported success
def _fsize_limit(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def test_4_file_size_limit_stops_with_whole_lines_and_a_resume_hint(tmp_path):
    n = 30
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"item number {i}", "id": i} for i in range(n)])
    r = cli(tmp_path, *batch_args("--concurrency", "1"), preexec_fn=_fsize_limit(2000))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "--resume" in r.stderr and "cut back to its last whole line" in r.stderr
    assert "Traceback" not in r.stderr
    rows = read_rows(tmp_path / "out.jsonl")  # whole JSON lines only, the torn one cut away
    assert 0 < len(rows) < n and (tmp_path / "out.jsonl").stat().st_size <= 2000
    m = re.search(r"(\d+) of (\d+) lines done", r.stderr)
    assert m and int(m.group(1)) == len(rows) and int(m.group(2)) == n
    r = cli(tmp_path, *batch_args("--resume"))
    assert r.returncode == 0, r.stderr
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert sorted(rows) == list(range(1, n + 1))
    assert all(rows[i + 1]["text"] == f"mock reply to: item number {i}" for i in range(n))


# ------------------------------------------------------------------ 5. poison lines took the batch down
POISON = [
    b'{"prompt": "before"}',
    b'{"prompt": "\\ud800"}',                     # valid JSON, a lone surrogate: not text
    b"[" * 100_000 + b"]" * 100_000,              # RecursionError in json.loads
    b'{"prompt": "caf\xe9"}',                     # Latin-1, not UTF-8
    '{"prompt": "para\u2028graph"}'.encode(),      # U+2028 inside a string: splitlines() split it
    '{"prompt": "next\u0085line"}'.encode(),       # U+0085 too
    b'{"prompt": "n", "options": {"temperature": NaN}}',
    b'{"prompt": 5}',
    b'{"prompt": "x", "unknown": 1}',
    b'{"prompt": "after"}',
]


def test_5_each_poison_line_costs_only_itself_and_resume_survives_it(tmp_path):
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(POISON) + b"\n")
    for extra in ((), ("--resume",)):
        r = cli(tmp_path, *batch_args(*extra))
        assert r.returncode == 1, r.stderr  # bad lines are failures; everything else is answered
        assert "Traceback" not in r.stderr
        rows = by_line(read_rows(tmp_path / "out.jsonl"))
        assert sorted(rows) == list(range(1, len(POISON) + 1))
        assert rows[1]["text"] == "mock reply to: before" and rows[10]["text"] == "mock reply to: after"
        assert rows[5]["text"] == "mock reply to: para\u2028graph"
        assert rows[6]["text"] == "mock reply to: next\u0085line"
        kinds = {n: rows[n]["error"]["kind"] for n in (2, 3, 4, 7, 8, 9)}
        assert kinds == {2: "lone_surrogate", 3: "too_deep", 4: "invalid_utf8", 7: "invalid_json",
                         8: "invalid_request", 9: "invalid_request"}
        for n in kinds:
            assert rows[n]["error"]["message"].startswith(f"line {n}: ")
    (tmp_path / "out.jsonl").read_bytes().decode("utf-8")  # strict UTF-8 throughout


# ------------------------------------------------------------------ 6. a line could make a smoke batch billed
def test_6_a_line_naming_another_mode_is_an_error_and_makes_no_call(tmp_path, fake_llm, monkeypatch, capsys):
    m = "openai/gpt-4o-mini"
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a", "mode": "live", "model": m}, {"prompt": "b", "model": m}])
    args = batch_args("--mode", "smoke", ref="llm/litellm@1")
    code, _, _ = cli_inproc(tmp_path, monkeypatch, capsys, *args, OPENAI_API_KEY=KEY, OPENAI_API_BASE=fake_llm.openai_base)
    assert code == 1
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert rows[1]["error"]["kind"] == "mode_mismatch" and "--mode smoke" in rows[1]["error"]["message"]
    assert rows[2]["mode"] == "smoke" and rows[2]["text"].startswith("smoke reply")
    assert fake_llm.hits("/v1/chat/completions") == 0


def test_6_a_line_naming_smoke_in_a_live_batch_is_an_error_too(tmp_path, fake_llm, monkeypatch, capsys):
    m = "openai/gpt-4o-mini"
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a", "mode": "smoke", "model": m}, {"prompt": "b", "model": m}])
    args = batch_args("--mode", "live", ref="llm/litellm@1")
    code, _, _ = cli_inproc(tmp_path, monkeypatch, capsys, *args, OPENAI_API_KEY=KEY, OPENAI_API_BASE=fake_llm.openai_base)
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert code == 1 and rows[1]["error"]["kind"] == "mode_mismatch"
    assert rows[2]["text"] == "echo: b" and fake_llm.hits("/v1/chat/completions") == 1


# ------------------------------------------------------------------ 7. results waited for the slowest; Ctrl-C lost them
def test_7_results_are_written_as_they_finish_not_after_the_slowest_earlier_item(tmp_path):
    fast = "openai/gpt-4o-mini"
    lines = [{"prompt": "slow", "model": "openai/hang-30"}] + [{"prompt": f"fast {i}", "model": fast} for i in range(5)]
    write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    with FakeLLMServer() as srv:
        env = env_for(tmp_path, OPENAI_API_KEY=KEY, OPENAI_API_BASE=srv.openai_base)
        proc = subprocess.Popen([sys.executable, "-m", "theory_modal", *batch_args(
            "--mode", "live", "--concurrency", "2", ref="llm/litellm@1")], env=env, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 5):
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)  # a kill now keeps every finished reply
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rows = by_line(read_rows(out))
    assert sorted(rows) == [2, 3, 4, 5, 6], "the fast items must not wait for the slow first one"


def test_7_ctrl_c_writes_what_finished_and_says_how_to_resume(tmp_path):
    fast = "openai/gpt-4o-mini"
    lines = [{"prompt": "slow", "model": "openai/hang-30"}] + [{"prompt": f"fast {i}", "model": fast} for i in range(5)]
    write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    args = batch_args("--mode", "live", "--concurrency", "2", "--grace", "0.5", ref="llm/litellm@1")
    with FakeLLMServer() as srv:
        env = dict(OPENAI_API_KEY=KEY, OPENAI_API_BASE=srv.openai_base)
        proc = subprocess.Popen([sys.executable, "-m", "theory_modal", *args], env=env_for(tmp_path, **env),
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 5):
                time.sleep(0.02)
            assert out.read_bytes().count(b"\n") == 5, "the fast items must not wait for the slow first one"
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, stderr
        assert "5 of 6 lines done; run the same command with --resume to finish" in stderr
        assert "Traceback" not in stderr
        rows = by_line(read_rows(out))
        assert sorted(rows) == [2, 3, 4, 5, 6]
        # The slow line is edited to a fast model: resume runs only it.
        write_jsonl(tmp_path / "in.jsonl", [{"prompt": "slow", "model": fast}] + lines[1:])
        srv.reset()
        r = cli(tmp_path, *args, "--resume", **env)
        assert r.returncode == 0, r.stderr
        assert srv.hits("/v1/chat/completions") == 1
    rows = by_line(read_rows(out))
    assert sorted(rows) == [1, 2, 3, 4, 5, 6] and rows[1]["text"] == "echo: slow"


def test_7_killed_mid_run_then_resumed_has_every_input_exactly_once(tmp_path):
    n = 120
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"item {i}", "id": i, "model": "openai/gpt-4o-mini"} for i in range(n)])
    args = batch_args("--mode", "live", "--concurrency", "2", ref="llm/litellm@1")
    out = tmp_path / "out.jsonl"
    with FakeLLMServer(latency=0.05) as srv:
        env = env_for(tmp_path, OPENAI_API_KEY=KEY, OPENAI_API_BASE=srv.openai_base)
        proc = subprocess.Popen([sys.executable, "-m", "theory_modal", *args], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 20):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        first = read_rows(out) if out.read_bytes().endswith(b"\n") else None
        assert first is not None and 20 <= len(first) < n, "the kill should land part-way, between whole lines"
        hits_before = srv.hits("/v1/chat/completions")
        r = subprocess.run([sys.executable, "-m", "theory_modal", *args, "--resume"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        redone = srv.hits("/v1/chat/completions") - hits_before
    rows = by_line(read_rows(out))
    assert sorted(rows) == list(range(1, n + 1))
    assert all(row["text"] == f"echo: item {row['id']}" and row["line"] == row["id"] + 1 for row in rows.values())
    assert redone == n - len(first)


# ------------------------------------------------------------------ 8. losing the control plane mid-batch
def test_8_control_plane_loss_writes_one_clean_error_line_per_in_flight_item(tmp_path, capsys):
    """In-process: the adapter's calls fail the way a dead control plane makes them fail."""
    from theory_modal.cli import main

    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(10)])

    class DeadControlPlane:
        def __init__(self) -> None:
            self.calls = 0
            self.lock = threading.Lock()
            self.barrier = threading.Barrier(3, timeout=10)

        def run(self, ref, payload):
            with self.lock:
                self.calls += 1
            self.barrier.wait()  # three calls are in flight when the connection goes
            raise ConnectionRefusedError(111, "Connection refused")

        def map(self, ref, payloads, concurrency=8):  # the old CLI's path: the map itself dies
            raise ConnectionRefusedError(111, "Connection refused")

    adapter = DeadControlPlane()
    import theory_modal.cli as cli_mod

    orig = cli_mod._make_adapter
    cli_mod._make_adapter = lambda *a, **k: adapter
    try:
        code = main(["batch", "--ref", MOCK, "--input", str(tmp_path / "in.jsonl"),
                     "--output", str(tmp_path / "out.jsonl"), "--concurrency", "3"])
    finally:
        cli_mod._make_adapter = orig
    err = capsys.readouterr().err
    assert code == 1
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert sorted(rows) == [1, 2, 3] and adapter.calls == 3  # the in-flight ones; nothing new started
    for row in rows.values():
        e = row["error"]
        assert e["kind"] == "modal_unreachable" and e["retryable"] is True
        assert "Errno" not in e["message"] and "connection refused" in e["message"] and "--resume" in e["message"]
    assert "Errno" not in err and "3 of 10 lines done; run the same command with --resume" in err


@pytest.mark.slow
def test_8_emulator_killed_mid_batch_leaves_a_line_for_every_in_flight_input(tmp_path):
    """The real thing: a Modal batch through the loopback emulator, whose process group is SIGKILLed."""
    lines = [{"prompt": f"p{i}", "model": "openai/hang-30" if i % 3 == 0 else "openai/gpt-4o-mini"} for i in range(12)]
    write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    with FakeLLMServer() as srv:
        (tmp_path / "secrets.json").write_text(json.dumps(
            {"openai-secret": {"OPENAI_API_KEY": KEY, "OPENAI_API_BASE": srv.openai_base}}))
        base = env_for(tmp_path)
        emu = subprocess.Popen([sys.executable, "-m", "theory_modal", "emulator", "--port", "0", "--secrets",
                                str(tmp_path / "secrets.json"), "--state-dir", str(tmp_path), "--max-containers", "3",
                                "--log-level", "ERROR"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=base, start_new_session=True)
        try:
            listening = emu.stdout.readline()
            assert listening.startswith("LISTENING 127.0.0.1:"), listening
            port = listening.strip().rsplit(":", 1)[1]
            env = dict(base, MODAL_SERVER_URL=f"http://127.0.0.1:{port}", MODAL_TOKEN_ID="ak-emulator",
                       MODAL_TOKEN_SECRET="as-emulator", THEORY_MODAL_SECRETS="openai-secret")
            dep = subprocess.run([sys.executable, "-m", "modal", "deploy", "deploy.py"], env=env, cwd=Path(__file__).parents[2],
                                 capture_output=True, text=True, timeout=300)
            assert dep.returncode == 0, dep.stdout + dep.stderr
            proc = subprocess.Popen([sys.executable, "-m", "theory_modal", *batch_args(
                "--mode", "live", "--adapter", "modal", "--concurrency", "3", "--grace", "10", ref="llm/litellm@1")],
                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 2):
                time.sleep(0.05)
            os.killpg(emu.pid, signal.SIGKILL)
            emu.wait(timeout=30)
            stdout, stderr = proc.communicate(timeout=180)
        finally:
            if emu.poll() is None:
                os.killpg(emu.pid, signal.SIGKILL)
                emu.wait()
            emu.stdout.close()
    assert proc.returncode == 1, stderr
    rows = by_line(read_rows(out))
    errors = {n: row["error"] for n, row in rows.items() if "error" in row}
    assert 1 in errors, "the hung first line was in flight: it needs a line"
    for e in errors.values():
        assert e["kind"] == "modal_unreachable" and "Errno" not in e["message"]
    assert "Traceback" not in stderr and "Errno" not in stderr
    assert re.search(r"\d+ of 12 lines done; run the same command with --resume to finish", stderr)


# ------------------------------------------------------------------ 9. confusing accounting
def test_9_line_numbers_count_blank_lines_everywhere(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"prompt": "a"}\n\n   \n{oops\n\n{"prompt": "b"}\n')
    r = cli(tmp_path, *batch_args())
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert sorted(rows) == [1, 4, 6]
    assert rows[4]["error"]["message"].startswith("line 4: ") and rows[6]["text"] == "mock reply to: b"
    assert r.returncode == 1


def test_9_summary_separates_kept_from_new_work(tmp_path, fake_llm, monkeypatch, capsys):
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"item {i}"} for i in range(4)])
    args = batch_args("--mode", "live", "--model", "openai/gpt-4o-mini", "--json", ref="llm/litellm@1")
    env = dict(OPENAI_API_KEY=KEY, OPENAI_API_BASE=fake_llm.openai_base)
    first = json.loads(cli_inproc(tmp_path, monkeypatch, capsys, *args, **env)[1])
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"item {i}"} for i in range(6)])
    second = json.loads(cli_inproc(tmp_path, monkeypatch, capsys, *args, "--resume", **env)[1])
    assert first["run"]["ok"] == 4 and first["run"]["usd_micros"] > 0
    assert second["kept"]["lines"] == 4 and second["run"]["ok"] == 2 and second["done"] == 6
    assert second["kept"]["usd_micros"] == first["run"]["usd_micros"]
    assert second["kept"]["tokens_in"] == first["run"]["tokens_in"]
    assert second["run"]["tokens_in"] == first["run"]["tokens_in"] // 2


def test_9_duplicate_ids_are_reported(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a", "id": "x"}, {"prompt": "b", "id": "y"}, {"prompt": "c", "id": "x"}])
    r = cli(tmp_path, *batch_args())
    assert "1 duplicate id(s)" in r.stdout and r.returncode == 1
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert rows[1]["text"] == "mock reply to: a" and rows[2]["text"] == "mock reply to: b"
    assert rows[3]["error"]["kind"] == "duplicate_id" and "line 1" in rows[3]["error"]["message"]


def test_9_concurrency_caps_inputs_in_flight_on_the_modal_adapter(tmp_path, capsys):
    """The Modal adapter's own calls are counted; the old CLI handed every input to ``Function.map`` at once."""
    import theory_modal.cli as cli_mod
    from theory_modal.adapters import ModalAdapter

    class CountingFunction:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.active = self.peak = self.calls = 0

        def remote(self, body):
            with self.lock:
                self.active += 1
                self.calls += 1
                self.peak = max(self.peak, self.active)
            time.sleep(0.05)
            with self.lock:
                self.active -= 1
            return {"ref": MOCK, "text": f"mock reply to: {body['prompt']}", "provider": "mock", "model": "mock",
                    "usage": {"tokens_in": 1, "tokens_out": 1, "latency_ms": 50, "usd_micros": 0}}

        def map(self, bodies, **kwargs):
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(bodies)) as pool:
                yield from pool.map(self.remote, bodies)

    fn = CountingFunction()
    adapter = ModalAdapter(app_name="theory")
    adapter._function = lambda name: fn  # the deployed function, minus the network
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(12)])
    orig = cli_mod._make_adapter
    cli_mod._make_adapter = lambda *a, **k: adapter
    try:
        code = cli_mod.main(["batch", "--ref", MOCK, "--adapter", "modal", "--input", str(tmp_path / "in.jsonl"),
                             "--output", str(tmp_path / "out.jsonl"), "--concurrency", "3"])
    finally:
        cli_mod._make_adapter = orig
    assert code == 0, capsys.readouterr().err
    assert fn.calls == 12 and 1 <= fn.peak <= 3
