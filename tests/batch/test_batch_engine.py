"""The engine in-process: budget, error cap, Ctrl-C grace, torn writes, locking, defaults, reading edge cases."""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest
from batch_helpers import MOCK, GateAdapter, by_line, cli, cli_inproc, read_rows, run_engine, write_jsonl

import theory_modal.batch as batch_mod
from theory_modal.batch import BatchInputError, BatchInUseError, OutputFile, parse_input

KEY = "sk-test-batch-0000000000"


def _lines(*rows) -> bytes:
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture
def priced(fake_llm, monkeypatch):
    """openai/gpt-4o-mini (priced: 0.15 and 0.6 micro-USD per token) against the loopback server, live mode."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
    return fake_llm


# ------------------------------------------------------------------ spend and error caps
@pytest.mark.parametrize("concurrency", [1, 4])
def test_max_usd_is_never_passed_and_unstarted_items_are_left_for_resume(tmp_path, priced, concurrency):
    data = _lines(*[{"prompt": f"item {i}"} for i in range(20)])
    opts = dict(ref="llm/litellm@1", mode="live", defaults={"model": "openai/gpt-4o-mini"}, concurrency=concurrency)
    s = run_engine(tmp_path, data, max_usd=0.00001, **opts)  # 10 micro-USD; each item costs 2
    assert s.stopped == "max_usd" and s.exit_code == 1
    assert 0 < s.ok < 20 and s.usd_micros <= 10 and s.usd_micros == 2 * s.ok
    assert s.not_started == 20 - s.ok and priced.hits("/v1/chat/completions") == s.ok
    assert "--max-usd 1e-05 reached" in s.reason and "--resume" in s.reason and "\n" not in s.reason
    rest = run_engine(tmp_path, data, resume=True, max_usd=1.0, **opts)
    assert rest.exit_code == 0 and rest.kept == s.ok and rest.ok == 20 - s.ok
    assert sorted(by_line(read_rows(tmp_path / "out.jsonl"))) == list(range(1, 21))


def test_max_usd_stops_on_a_reply_whose_cost_is_unknown(tmp_path, priced):
    data = _lines(*[{"prompt": f"item {i}"} for i in range(5)])
    s = run_engine(tmp_path, data, ref="llm/litellm@1", mode="live", defaults={"model": "openai/not-priced"},
                   max_usd=1.0, concurrency=3)
    assert s.stopped == "max_usd" and s.ok == 1 and s.cost_unknown == 1  # only the probe ran
    assert "cost is unknown" in s.reason


def test_max_usd_through_the_cli_exits_1_with_one_line(tmp_path, priced, monkeypatch, capsys):
    write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"item {i}"} for i in range(10)])
    code, out, err = cli_inproc(tmp_path, monkeypatch, capsys, "batch", "--ref", "llm/litellm@1", "--mode", "live",
                                "--model", "openai/gpt-4o-mini", "--input", "in.jsonl", "--output", "out.jsonl",
                                "--max-usd", "0.000005", "--json", OPENAI_API_KEY=KEY,
                                OPENAI_API_BASE=priced.openai_base)
    assert code == 1
    assert json.loads(out)["run"]["usd_micros"] <= 5
    assert err.count("\n") == 1 and err.startswith("stopped: --max-usd")


@pytest.mark.parametrize("concurrency", [1, 3])
def test_max_errors_stops_starting_items(tmp_path, priced, concurrency):
    data = _lines(*[{"prompt": f"item {i}", "model": "openai/error-401"} for i in range(12)])
    s = run_engine(tmp_path, data, ref="llm/litellm@1", mode="live", max_errors=2, concurrency=concurrency)
    assert s.stopped == "max_errors" and s.exit_code == 1
    assert 2 <= s.failed <= 2 + concurrency - 1 and s.not_started == 12 - s.failed
    assert priced.hits("/v1/chat/completions") == s.failed
    rows = read_rows(tmp_path / "out.jsonl")
    assert len(rows) == s.failed and all(r["error"]["kind"] == "credentials" for r in rows)


def test_bad_input_lines_do_not_count_towards_max_errors(tmp_path):
    s = run_engine(tmp_path, _lines("{bad", "{bad", "{bad", {"prompt": "ok"}), max_errors=1)
    assert s.input_errors == 3 and s.ok == 1 and s.stopped is None


# ------------------------------------------------------------------ Ctrl-C
def test_stop_lets_in_flight_items_finish_and_writes_them(tmp_path):
    adapter = GateAdapter()
    data = _lines(*[{"prompt": f"p{i}"} for i in range(6)])
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("s", run_engine(tmp_path, data, adapter=adapter,
                                                                        concurrency=2, engine_hook=result)))
    t.start()
    for _ in range(2):
        assert adapter.started.acquire(timeout=10)
    result["engine"].request_stop()
    adapter.gate.set()
    t.join(30)
    s = result["s"]
    assert s.stopped == "interrupted" and s.exit_code == 130 and s.ok == 2 and s.not_started == 4
    assert s.reason == "2 of 6 lines done; run the same command with --resume to finish"
    assert sorted(by_line(read_rows(tmp_path / "out.jsonl"))) == [1, 2]
    assert len(adapter.calls) == 2


def test_stop_gives_up_on_in_flight_items_after_the_grace_period(tmp_path):
    adapter = GateAdapter()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("s", run_engine(
        tmp_path, _lines({"prompt": "a"}, {"prompt": "b"}), adapter=adapter, grace_seconds=0.2, engine_hook=result)))
    t.start()
    for _ in range(2):
        assert adapter.started.acquire(timeout=10)
    result["engine"].request_stop()
    t.join(30)
    adapter.gate.set()
    s = result["s"]
    assert s.exit_code == 130 and s.unanswered == 2 and s.done == 0
    assert read_rows(tmp_path / "out.jsonl") == []


# ------------------------------------------------------------------ writes that cannot tear
@pytest.mark.parametrize("failure", ["enospc", "short-then-enospc", "zero"])
def test_a_failed_write_cuts_the_file_back_to_whole_lines(tmp_path, monkeypatch, failure):
    real = os.write
    calls = {"n": 0}

    def flaky(fd, data):
        calls["n"] += 1
        if calls["n"] <= 4:
            return real(fd, data)
        if failure == "short-then-enospc" and calls["n"] == 5:
            return real(fd, bytes(data[:7]))
        if failure == "zero":
            return 0
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch_mod, "_write", flaky)
    data = _lines(*[{"prompt": f"p{i}"} for i in range(10)])
    s = run_engine(tmp_path, data, concurrency=1)
    assert s.stopped == "write_failed" and s.exit_code == 1
    assert "cut back to its last whole line" in s.reason and "--resume" in s.reason
    rows = read_rows(tmp_path / "out.jsonl")
    assert len(rows) == 4 and s.ok == 4  # the fifth reply could not be written: it is not counted either
    monkeypatch.setattr(batch_mod, "_write", real)
    rest = run_engine(tmp_path, data, resume=True)
    assert rest.exit_code == 0 and rest.kept == 4
    assert sorted(by_line(read_rows(tmp_path / "out.jsonl"))) == list(range(1, 11))


def test_a_failed_rewrite_on_resume_leaves_the_old_output_and_no_temp_file(tmp_path, monkeypatch):
    data = _lines(*[{"prompt": f"p{i}"} for i in range(5)])
    run_engine(tmp_path, data)
    before = (tmp_path / "out.jsonl").read_bytes()

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch_mod, "_write", full)
    with pytest.raises(batch_mod.BatchError, match="left unchanged"):
        run_engine(tmp_path, _lines(*[{"prompt": f"q{i}"} for i in range(2)] + [{"prompt": "p2"}]), resume=True)
    assert (tmp_path / "out.jsonl").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"]


# ------------------------------------------------------------------ locking and protection
def test_the_lock_survives_the_resume_rewrite(tmp_path):
    path = str(tmp_path / "out.jsonl")
    (tmp_path / "out.jsonl").write_bytes(b'{"line": 1}\n')
    a = OutputFile(path)
    a.open_locked()
    try:
        with pytest.raises(BatchInUseError, match="in use by another batch"):
            OutputFile(path).open_locked()
        a.replace_with([b'{"line": 2}\n'])  # a new inode now sits at the path, locked before it got there
        with pytest.raises(BatchInUseError, match="in use by another batch"):
            OutputFile(path).open_locked()
    finally:
        a.close()
    b = OutputFile(path)
    b.open_locked()
    b.close()
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"line": 2}\n'
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"]


def test_a_temp_file_left_by_a_killed_rewrite_is_removed_by_the_next_run(tmp_path):
    (tmp_path / ".out.jsonl.batch-999-deadbeef.tmp").write_bytes(b"half")
    (tmp_path / "unrelated.tmp").write_bytes(b"keep me")
    run_engine(tmp_path, _lines({"prompt": "a"}))
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl", "unrelated.tmp"]


def test_contradicting_flags_and_bad_outputs_are_bad_input(tmp_path):
    with pytest.raises(BatchInputError, match="contradict"):
        run_engine(tmp_path, _lines({"prompt": "a"}), resume=True, overwrite=True)
    with pytest.raises(BatchInputError, match="is a directory"):
        run_engine(tmp_path, _lines({"prompt": "a"}), out=".")
    with pytest.raises(BatchInputError, match="directory does not exist"):
        run_engine(tmp_path, _lines({"prompt": "a"}), out="missing/out.jsonl")


# ------------------------------------------------------------------ defaults, reading, writing
def test_command_defaults_apply_to_every_line_and_the_line_wins(tmp_path):
    adapter = GateAdapter()
    adapter.gate.set()
    data = _lines({"prompt": "a"}, {"prompt": "b", "model": "mock/other", "options": {"temperature": 1}})
    defaults = {"model": "mock/m", "system": "be brief", "options": {"temperature": 0.2, "max_tokens": 5}}
    s = run_engine(tmp_path, data, adapter=adapter, defaults=defaults)
    assert s.exit_code == 0
    calls = sorted(adapter.calls, key=lambda p: p["prompt"])
    assert calls[0] == {"prompt": "a", "model": "mock/m", "mode": "smoke",
                        "options": {"temperature": 0.2, "max_tokens": 5, "system": "be brief"}}
    assert calls[1] == {"prompt": "b", "model": "mock/other", "mode": "smoke",
                        "options": {"temperature": 1, "max_tokens": 5, "system": "be brief"}}
    # Other defaults ask something else: resume runs every line again.
    again = run_engine(tmp_path, data, adapter=adapter, resume=True, defaults={**defaults, "system": "verbose"})
    assert again.kept == 0 and again.rerun_changed == 2


def test_cli_option_values_are_json_and_stdin_is_an_input(tmp_path):
    r = cli(tmp_path, "batch", "--ref", MOCK, "--input", "-", "--output", "out.jsonl", "--option", "temperature=0.5",
            "--option", 'stop=["x"]', "--system", "sys", "--json", stdin=open(os.devnull, "rb"))
    assert r.returncode == 0 and json.loads(r.stdout)["lines"] == 0
    p = tmp_path / "in.jsonl"
    p.write_bytes(_lines({"prompt": "from stdin"}))
    with open(p, "rb") as f:
        r = cli(tmp_path, "batch", "--ref", MOCK, "--input", "-", "--output", "out2.jsonl", "--option", "temperature=9",
                stdin=f)
    rows = read_rows(tmp_path / "out2.jsonl")
    assert r.returncode == 1 and "temperature' must be between 0 and 2" in rows[0]["error"]["message"]
    assert "\x1b[" not in r.stderr and "━" not in r.stderr  # no progress bar when stderr is not a terminal
    r = cli(tmp_path, "batch", "--ref", MOCK, "--input", "in.jsonl", "--output", "o3.jsonl", "--option", "novalue")
    assert r.returncode == 2 and "--option expects key=value" in r.stderr
    r = cli(tmp_path, "batch", "--ref", MOCK, "--input", "in.jsonl", "--output", "-")
    assert r.returncode == 2 and "--output - is not supported" in r.stderr and not (tmp_path / "-").exists()


def test_bom_crlf_and_unicode_separators_are_read_as_one_line_each(tmp_path):
    data = b"\xef\xbb\xbf" + '{"prompt": "a\u2028b"}\r\n"c\u0085d"\r\n\r\n{"prompt": "e\u2029f"}'.encode()
    items, n = parse_input(data, ref=MOCK, mode="smoke")
    assert n == 4 and [it.line for it in items] == [1, 2, 4]
    assert [it.payload["prompt"] for it in items] == ["a\u2028b", "c\u0085d", "e\u2029f"]


def test_too_large_lines_and_bad_ids_are_error_lines(tmp_path):
    data = _lines({"prompt": "x" * 200}, {"prompt": "a", "id": [1]}, {"prompt": "b", "id": True}, {"prompt": "c", "id": 7})
    items, _ = parse_input(data, ref=MOCK, mode="smoke", max_line_bytes=100)
    assert [it.error["kind"] if it.error else None for it in items] == ["line_too_large", "invalid_id", "invalid_id", None]


def test_replies_holding_lone_surrogates_are_written_as_valid_utf8(tmp_path):
    class Weird:
        def run(self, ref, payload):
            return {"ref": ref, "text": "bad \ud800 text", "data": {"x": float("nan")}, "provider": "p", "model": "m",
                    "usage": {"tokens_in": 1, "tokens_out": 1, "latency_ms": 0, "usd_micros": 0}}

    s = run_engine(tmp_path, _lines({"prompt": "a"}), adapter=Weird())
    assert s.exit_code == 0
    row = read_rows(tmp_path / "out.jsonl")[0]
    assert row["text"] == "bad \ufffd text" and row["data"] == {"x": None}


def test_an_adapter_failure_that_is_not_the_control_plane_costs_only_its_item(tmp_path):
    class Picky:
        def run(self, ref, payload):
            if payload["prompt"] == "boom":
                raise RuntimeError("boom\nwith a second line")
            return {"ref": ref, "text": "fine", "usage": {"tokens_in": 1, "tokens_out": 1, "latency_ms": 0, "usd_micros": 0}}

    s = run_engine(tmp_path, _lines({"prompt": "a"}, {"prompt": "boom"}, {"prompt": "c"}), adapter=Picky())
    rows = by_line(read_rows(tmp_path / "out.jsonl"))
    assert s.stopped is None and s.ok == 2 and s.failed == 1
    assert rows[2]["error"] == {"type": "RuntimeError", "kind": "error", "message": "boom with a second line",
                                "retryable": False}
