"""Property: after any sequence of runs, edits, interruptions and ``--resume`` runs, every non-blank input line
is answered exactly once, by a reply to *that* line's current content, and every output line is whole JSON.

Hypothesis builds random input files (valid prompts, bare strings, random bytes, broken JSON, deep nesting, lone
surrogates, wrong modes, scripted failures, duplicate ids, blank lines), edits them between runs, stops runs after
k items, tears the output's last line as a SIGKILL mid-write would, duplicates output lines, and checks the invariant with the mock
processor in-process (``llm/mock@1``, smoke mode).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from batch_helpers import MOCK, batch_args, by_line, env_for, read_rows, run_engine, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from theory_modal.batch import parse_input

_TEXT = st.text(alphabet=st.sampled_from(list("ab xé\u2028\u0085\"\\{}[]") + ["\U0001f600"]), min_size=1, max_size=8)
_IDS = st.one_of(st.none(), st.sampled_from(["a", "b", 1, 2]))


def _obj(prompt: str, item_id, extra: dict) -> bytes:
    obj = {"prompt": prompt, **extra}
    if item_id is not None:
        obj["id"] = item_id
    return json.dumps(obj, ensure_ascii=bool(extra.get("_ascii"))).encode()


_LINE = st.one_of(
    st.builds(lambda p, i: _obj(p, i, {}), _TEXT, _IDS),
    st.builds(lambda p, i: _obj(p, i, {"options": {"mock_error": "timeout"}}), _TEXT, _IDS),
    st.builds(lambda p, i: _obj(p, i, {"mode": "live"}), _TEXT, _IDS),
    st.builds(lambda p: json.dumps(p).encode(), _TEXT),
    st.just(b""), st.just(b"   \r"),
    st.just(b'{"prompt": "\\ud83d"}'), st.just(b'{"prompt": "   "}'), st.just(b"[" * 80 + b"]" * 80),
    st.just(b'{"prompt": "x", "id": 1.5}'), st.just(b"null"), st.just(b"{oops"),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b),
)
_EDIT = st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 30), _LINE)
_RUN = st.tuples(
    st.lists(_EDIT, max_size=3),
    st.one_of(st.none(), st.integers(0, 6)),  # stop after k items, or run to the end
    st.one_of(st.none(), st.integers(1, 200)),  # then tear the output's tail by this many bytes
    st.integers(1, 4),  # concurrency
    st.one_of(st.none(), st.integers(0, 30)),  # then append a copy of this output line (a concatenated output)
)


def _check(out: Path, data: bytes, *, complete: bool) -> None:
    items, _ = parse_input(data, ref=MOCK, mode="smoke")
    want = {it.line: it for it in items}
    rows = read_rows(out)  # whole JSON lines only, strict UTF-8
    seen: set[int] = set()
    for row in rows:
        line = row["line"]
        assert line in want, f"output line {line} answers no current input line"
        assert line not in seen, f"line {line} answered twice"
        seen.add(line)
        it = want[line]
        assert row["fingerprint"] == it.fingerprint, f"line {line}: a reply to other content was kept"
        if it.error is None and "error" not in row:
            assert row["text"] == f"mock reply to: {it.payload['prompt']}"
        if it.error is not None:
            assert row["error"]["kind"] == it.error["kind"]
        if it.id is not None:
            assert row["id"] == it.id
    if complete:
        assert seen == set(want), f"unanswered lines: {sorted(set(want) - seen)}"


def _edit(lines: list[bytes], edits) -> list[bytes]:
    lines = list(lines)
    for kind, pos, new in edits:
        i = pos % (len(lines) + 1)
        if kind == "insert" or not lines:
            lines.insert(i, new)
        elif kind == "replace":
            lines[i % len(lines)] = new
        else:
            del lines[i % len(lines)]
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.lists(_LINE, max_size=12), runs=st.lists(_RUN, max_size=4))
def test_every_line_is_answered_once_by_a_reply_to_its_current_content(first, runs):
    tmp = Path(tempfile.mkdtemp(prefix="batch-prop-"))
    try:
        out = tmp / "out.jsonl"
        lines = first
        data = b"\n".join(lines) + b"\n"
        run_engine(tmp, data)
        _check(out, data, complete=True)
        for edits, stop_after, tear, concurrency, dup in runs:
            lines = _edit(lines, edits)
            data = b"\n".join(lines) + b"\n"
            s = run_engine(tmp, data, resume=True, stop_after=stop_after, concurrency=concurrency)
            _check(out, data, complete=s.stopped is None)
            if tear:
                raw = out.read_bytes()
                out.write_bytes(raw[: max(0, len(raw) - tear)])  # a kill mid-write leaves a torn tail
            whole = out.read_bytes().split(b"\n")[:-1]
            if dup is not None and whole:
                with open(out, "ab") as f:  # after a torn tail this also glues onto it: another bad line
                    f.write(whole[dup % len(whole)] + b"\n")
        final = run_engine(tmp, data, resume=True)  # the last --resume finishes the job
        assert final.stopped is None
        _check(out, data, complete=True)
        assert sorted(p.name for p in tmp.iterdir()) == ["out.jsonl"]  # no stray temp files
    finally:
        shutil.rmtree(tmp)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_crash_the_reader_and_every_non_blank_line_becomes_an_item(data):
    items, n = parse_input(data, ref=MOCK, mode="smoke")
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    expected = [i for i, raw in enumerate(body.split(b"\n"), 1) if raw.strip(b" \t\r")]
    assert [it.line for it in items] == expected
    for it in items:
        assert (it.payload is None) != (it.error is None)
        json.dumps(it.error, ensure_ascii=False).encode("utf-8")  # always encodable


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(n=st.integers(5, 40), concurrency=st.integers(1, 4), kill_after=st.floats(0.0, 2.5),
       sig=st.sampled_from([signal.SIGINT, signal.SIGKILL, signal.SIGTERM]), edit=st.integers(0, 60))
def test_a_subprocess_killed_at_a_random_moment_then_resumed_answers_every_line_once(
        _fake_llm_server, n, concurrency, kill_after, sig, edit):
    """The same invariant through the real CLI: a signal at a random moment (possibly mid-rewrite or mid-line),
    an edit of one line, then ``--resume`` until done."""
    srv = _fake_llm_server
    tmp = Path(tempfile.mkdtemp(prefix="batch-kill-"))
    try:
        prompts = [f"item {i}" for i in range(n)]
        write_jsonl(tmp / "in.jsonl", [{"prompt": p, "model": "openai/gpt-4o-mini"} for p in prompts])
        env = env_for(tmp, OPENAI_API_KEY="sk-test-batch-0000000000", OPENAI_API_BASE=srv.openai_base)
        args = [sys.executable, "-m", "theory_modal", *batch_args("--mode", "live", "--concurrency", str(concurrency),
                                                                  ref="llm/litellm@1")]
        proc = subprocess.Popen(args, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(kill_after)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        if (tmp / "out.jsonl").exists():
            data = (tmp / "out.jsonl").read_bytes()
            assert data == b"" or data.endswith(b"\n") or sig == signal.SIGKILL  # only a kill can tear a line
        prompts[edit % n] = "EDITED"
        write_jsonl(tmp / "in.jsonl", [{"prompt": p, "model": "openai/gpt-4o-mini"} for p in prompts])
        r = subprocess.run(args + ["--resume"], env=env, cwd=tmp, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rows = by_line(read_rows(tmp / "out.jsonl"))
        assert sorted(rows) == list(range(1, n + 1))
        assert all(rows[i + 1]["text"] == f"echo: {p}" for i, p in enumerate(prompts))
        assert sorted(p.name for p in tmp.iterdir()) == ["in.jsonl", "out.jsonl"]
    finally:
        shutil.rmtree(tmp)
