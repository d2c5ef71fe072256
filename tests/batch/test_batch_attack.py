"""Attacks on the batch output path: outputs that are not plain files, and outputs that are symlinks."""

from __future__ import annotations

import json
import os

import pytest
from batch_helpers import MOCK, write_jsonl

from theory_modal.batch import Batch, BatchInputError, BatchOptions
from theory_modal.adapters import get_adapter


def _opts(tmp_path, out, rows, **kw):
    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, rows)
    return BatchOptions(ref=MOCK, mode="smoke", output=str(out), input_data=inp.read_bytes(),
                        input_stat=os.stat(inp), **kw)


@pytest.mark.parametrize("resume", [False, True])
def test_an_output_that_is_not_a_regular_file_is_refused_before_any_call_never_hangs(tmp_path, resume):
    """A FIFO output used to hang forever once its pipe buffer filled (even SIGTERM could not stop it) and
    ``--resume`` on it died with a raw ``[Errno 29] Illegal seek``: a batch needs a file it can lock, cut back and
    resume, so anything else is bad input (exit 2), named, with nothing sent."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    calls = []

    class Counting:
        def run(self, ref, payload):
            calls.append(payload)
            return get_adapter("local").run(ref, payload)

    with pytest.raises(BatchInputError, match="not a regular file"):
        Batch(_opts(tmp_path, fifo, [{"prompt": "x" * 100, "id": i} for i in range(3)], resume=resume),
              Counting()).run()
    assert calls == []


def test_a_symlinked_output_stays_a_symlink_across_resume_and_one_lock_covers_both_spellings(tmp_path):
    """``--resume`` rewrote the path it was given: a symlinked output became a plain file, the real file kept
    the stale lines, and a second batch through the real path no longer met the first one's lock."""
    real = tmp_path / "results" / "real.jsonl"
    real.parent.mkdir()
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    rows = [{"prompt": "a", "id": 1}, {"prompt": "b", "id": 2}]
    assert Batch(_opts(tmp_path, link, rows[:1]), get_adapter("local")).run().exit_code == 0
    s = Batch(_opts(tmp_path, link, rows, resume=True), get_adapter("local")).run()
    assert s.exit_code == 0 and s.kept == 1
    assert link.is_symlink()
    assert sorted(json.loads(x)["id"] for x in real.read_text().splitlines()) == [1, 2]
