"""Attachments, searched: only regular files are read, never more than cap+1 bytes, nothing blocks; every
malformed attachment dict is an InvalidRequestError (never AttributeError/TypeError); the base64 cap is checked
before decoding, and by the adapter before anything is shipped."""

from __future__ import annotations

import base64
import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import Attachment, InvalidRequestError
from providers.attachments import b64_length, check_dict

json_junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=8)),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=8), kids, max_size=3)),
    max_leaves=10,
)


def _in_thread(fn, timeout: float = 5.0):
    """Run fn in a thread; fail (instead of hanging the suite) if it blocks."""
    box: list = []

    def run():
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001
            box.append(("err", exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert box, f"{fn} blocked for {timeout}s"
    return box[0]


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null", "/dev/stdin", "/", "/proc/self/fd/0"])
def test_special_files_are_refused_without_reading(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    kind, value = _in_thread(lambda: Attachment.from_path(path))
    assert kind == "err" and isinstance(value, InvalidRequestError), value
    assert "not a regular file" in str(value) or "no such file" in str(value)


def test_a_fifo_is_refused_and_never_blocks(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    kind, value = _in_thread(lambda: Attachment.from_path(fifo))
    assert kind == "err" and isinstance(value, InvalidRequestError) and "FIFO" in str(value)


def test_a_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")
    kind, value = _in_thread(lambda: Attachment.from_path(link))
    assert kind == "err" and isinstance(value, InvalidRequestError)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 5000), cap=st.integers(1, 4000))
def test_reads_stop_at_the_cap(tmp_path_factory, size, cap):
    path = tmp_path_factory.mktemp("cap") / "f.txt"
    path.write_bytes(b"a" * size)
    if size > cap:
        with pytest.raises(InvalidRequestError, match="cap"):
            Attachment.from_path(path, max_bytes=cap)
    elif size:
        assert Attachment.from_path(path, max_bytes=cap).size == size


def test_a_file_that_grows_after_the_stat_is_read_only_to_cap_plus_one(tmp_path, monkeypatch):
    """Even when st_size lies (a file still being written), at most cap+1 bytes are read."""
    path = tmp_path / "growing.txt"
    path.write_bytes(b"a" * 10_000)
    real_stat = os.stat
    reads: list[int] = []
    real_read = os.read

    def small_stat(p, *a, **k):
        st_ = real_stat(p, *a, **k)
        return os.stat_result((st_.st_mode, *st_[1:6], 10, *st_[7:]))  # claims 10 bytes

    def counting_read(fd, n):
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "stat", small_stat)
    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(InvalidRequestError, match="cap"):
        Attachment.from_path(path, max_bytes=100)
    assert sum(reads) == 101


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(
    json_junk,
    st.fixed_dictionaries({"name": json_junk, "mime": json_junk, "data_b64": json_junk}),
    st.fixed_dictionaries({"name": st.text(max_size=30), "data_b64": st.text(max_size=40)},
                          optional={"mime": st.one_of(st.text(max_size=10), st.integers(), st.none()),
                                    "extra": json_junk}),
))
def test_malformed_attachment_dicts_are_invalid_requests(data):
    """The issue's ``"mime": 5`` (AttributeError, exit 1) generalised: junk in, InvalidRequestError out."""
    try:
        att = Attachment.from_dict(data)
    except InvalidRequestError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(data, dict) and isinstance(att, Attachment)
    assert att.data == base64.b64decode(data["data_b64"], validate=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.integers(1, 10_000), extra=st.integers(1, 10_000))
def test_oversized_base64_is_refused_before_decoding(cap, extra, monkeypatch):
    big = "A" * (b64_length(cap) + extra)
    calls: list[int] = []  # the patched b64decode is the same for every example: counts start at zero
    real = base64.b64decode
    monkeypatch.setattr(base64, "b64decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(InvalidRequestError, match="cap"):
        Attachment.from_dict({"name": "x", "mime": "text/plain", "data_b64": big}, max_bytes=cap)
    assert calls == []
    with pytest.raises(InvalidRequestError):
        check_dict({"name": "x", "data_b64": big}, max_bytes=cap)
