"""The JSONL batch engine: run one processor over every line of a file, and never lose or mis-keep a reply.

A batch is paid work that gets interrupted and resumed, so the engine is built around one invariant: after
any sequence of runs and ``--resume`` runs, every non-blank input line has exactly one output line, and that
line answers the line's *current* content. How:

- **Every output line names its input.** ``line`` (1-based, blank lines counted), ``id`` when the line gave
  one, and ``fingerprint``: sha256 of the canonical JSON of what was asked (ref, mode, id and the line's
  effective payload after ``--model``/``--system``/``--option`` defaults). Lines that cannot be parsed are
  fingerprinted by their raw bytes.
- **Resume keeps a reply only if its fingerprint matches** the current input at that line, and only the
  first such reply. Error lines, replies to changed lines and torn lines run again. The output is first
  rewritten to the kept lines (temp file in the same directory, fsync, ``os.replace``), so it never holds a
  stale reply.
- **One batch per output**: an exclusive ``flock`` on the output file for the whole run. The rewrite locks
  its temp file *before* swapping it in, and every locker re-checks that the path still names the file it
  locked, so a second batch can never slip in through the swap.
- **Writes cannot tear**: each line is written with a checked loop; on an error the file is cut back to its
  last whole line and the run stops with a message saying how to resume.
- **Reading cannot crash**: bytes are split on ``\\n`` only; each bad line (invalid UTF-8, invalid JSON, too
  deep, too large, a lone surrogate, wrong shape, a mode other than the batch's) becomes an error line for
  that line alone, without a call.
- **Results are written as they finish**: the engine drives ``adapter.run`` itself on at most
  ``concurrency`` threads (the cap holds on the Modal adapter too).

Budget (``max_usd``): before starting an item the engine checks ``spent + (in flight + 1) * estimate`` against
the cap, where *estimate* is the highest cost of any item finished in this run (a conservative guess: the next
item costs as much as the dearest so far). Until the first priced reply arrives, only one item is in flight,
so the cap holds from the first call. A reply whose cost is unknown stops the run: the cap could not be
enforced. The cap is per run: replies kept by ``--resume`` were paid for earlier and do not count.

Duplicate ids: the first line with an id runs; every later line with the same id becomes an error line
(``kind`` ``duplicate_id``), because results are joined back by id and two replies under one id are ambiguous.
"""

from __future__ import annotations

import errno as errno_mod
import glob
import hashlib
import json
import math
import os
import queue
import re
import secrets
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BatchError",
    "BatchInputError",
    "BatchInUseError",
    "BatchOptions",
    "BatchSummary",
    "Batch",
    "Item",
    "OutputFile",
    "parse_input",
    "parse_json_line",
    "encode_line",
    "fingerprint",
    "MAX_LINE_BYTES",
    "MAX_DEPTH",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

#: A line longer than this is an error line (it would not fit a request anyway: attachments are capped at 20 MB).
MAX_LINE_BYTES = 32 * 1024 * 1024
#: Deeper JSON nesting is an error line; checked before parsing, so no line can raise RecursionError.
MAX_DEPTH = 64
_BOM = b"\xef\xbb\xbf"
_JSON_BLANK = b" \t\r"
_TOKENS = re.compile(r'\\.|["\[\]{}]', re.S)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ERRNO_PREFIX = re.compile(r"\[Errno -?\d+\]\s*")
_MAX_MESSAGE = 1000
_RESUME_HINT = "run the same command with --resume to finish"


# ------------------------------------------------------------------------------------------------ errors
class BatchError(RuntimeError):
    """A batch that cannot start. ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_FAILURE


class BatchInputError(BatchError):
    """Bad arguments or a protected output: nothing was written."""

    exit_code = EXIT_BAD_INPUT


class BatchInUseError(BatchInputError):
    """Another batch holds the output's lock."""


class _WriteFailed(Exception):
    """A line could not be written whole; the file was cut back to its last whole line."""


# ------------------------------------------------------------------------------------------------ input
@dataclass
class Item:
    """One non-blank input line: either a payload to send, or an error to write without any call."""

    line: int
    fingerprint: str
    id: Any = None
    payload: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def fingerprint(ref: str, mode: str, payload: Any, item_id: Any = None, *, raw: bytes | None = None) -> str:
    """sha256 of what was asked. ``raw`` (a line that could not be parsed) is fingerprinted by its bytes."""
    asked: dict[str, Any] = {"v": 1, "ref": ref, "mode": mode}
    if raw is not None:
        asked["raw_sha256"] = hashlib.sha256(raw).hexdigest()
    else:
        asked["payload"] = payload
        if item_id is not None:
            asked["id"] = item_id
    return hashlib.sha256(_canonical(asked).encode("ascii")).hexdigest()


def _input_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "InvalidRequestError", "kind": kind, "message": message, "retryable": False}


def _too_deep(text: str, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit`` (strings skipped). Linear, no recursion, no parse."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok == '"':
            in_string = not in_string
        elif in_string or len(tok) == 2:  # inside a string, or an escape pair
            continue
        elif tok in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _has_lone_surrogate(obj: Any) -> bool:
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_line(raw: bytes, *, max_bytes: int = MAX_LINE_BYTES, max_depth: int = MAX_DEPTH) -> tuple[Any, str | None, str | None]:
    """bytes -> (value, error kind, error message). Never raises: every way a line can be bad is an error."""
    if len(raw) > max_bytes:
        return None, "line_too_large", f"line is {len(raw):,} bytes, over the {max_bytes:,}-byte cap"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, "invalid_utf8", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}): save the file as UTF-8"
    if _too_deep(text, max_depth):
        return None, "too_deep", f"JSON nested deeper than {max_depth} levels"
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # pragma: no cover - _too_deep rules this out; kept as a last line of defence
        return None, "too_deep", f"JSON nested deeper than {max_depth} levels"
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        col = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        return None, "invalid_json", f"not valid JSON ({msg}{col})"
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        return None, "lone_surrogate", "a string holds a lone surrogate escape (e.g. \\ud800), which is not text: fix or remove it"
    return value, None, None


def _merge_defaults(obj: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The line wins over the command's defaults: ``model``, then ``options`` key by key."""
    payload = dict(obj)
    if defaults.get("model") is not None and "model" not in payload:
        payload["model"] = defaults["model"]
    if defaults.get("fallbacks") is not None and "fallbacks" not in payload:
        payload["fallbacks"] = list(defaults["fallbacks"])
    default_options = dict(defaults.get("options") or {})
    if defaults.get("system") is not None:
        default_options["system"] = defaults["system"]
    if default_options:
        line_options = payload.get("options")
        if line_options is None:
            payload["options"] = default_options
        elif isinstance(line_options, dict):
            payload["options"] = {**default_options, **line_options}
    return payload


def _validate(payload: dict[str, Any]) -> None:
    """The request's own validation, before any call (raises InvalidRequestError naming the field)."""
    from theory_modal.wire import Request

    Request.from_dict(payload)


def parse_input(data: bytes, *, ref: str, mode: str, defaults: dict[str, Any] | None = None,
                max_line_bytes: int = MAX_LINE_BYTES) -> tuple[list[Item], int]:
    """Input bytes -> (items for every non-blank line, number of lines). Never raises on content.

    Lines are split on ``\\n`` only (U+2028, U+0085 and friends stay inside their JSON strings); a leading
    UTF-8 BOM is dropped; a trailing ``\\r`` is JSON whitespace. Duplicate ids after the first are error lines.
    """
    defaults = defaults or {}
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline does not open a line
    items: list[Item] = []
    seen_ids: dict[str, int] = {}
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip(_JSON_BLANK):
            continue
        items.append(_parse_line(lineno, raw, ref, mode, defaults, max_line_bytes, seen_ids))
    return items, len(lines)


def _parse_line(lineno: int, raw: bytes, ref: str, mode: str, defaults: dict[str, Any], max_bytes: int,
                seen_ids: dict[str, int]) -> Item:
    def bad(kind: str, message: str, item_id: Any = None) -> Item:  # fingerprinted by the raw bytes
        return Item(lineno, fingerprint(ref, mode, None, raw=raw), id=item_id,
                    error=_input_error(kind, f"line {lineno}: {message}"))

    value, kind, message = parse_json_line(raw, max_bytes=max_bytes)
    if kind is not None:
        return bad(kind, message)
    if isinstance(value, str):
        value = {"prompt": value}
    if not isinstance(value, dict):
        return bad("invalid_shape", f"expected a JSON object with 'prompt' (or a JSON string), got {_json_type(value)}")
    obj = dict(value)
    item_id = obj.pop("id", None)
    if item_id is not None and (isinstance(item_id, bool) or not isinstance(item_id, (str, int))):
        return bad("invalid_id", f"'id' must be a string or an integer, got {_json_type(item_id)}")
    if "mode" in obj and obj["mode"] != mode:
        return bad("mode_mismatch", f"asks for mode {obj['mode']!r} but this batch runs --mode {mode}; a batch's mode "
                   "is the command's: remove 'mode' from the line, or run the batch with that --mode",
                   item_id=item_id)
    payload = _merge_defaults(obj, defaults)
    payload["mode"] = mode
    fp = fingerprint(ref, mode, payload, item_id)
    if item_id is not None:
        key = _canonical(item_id)
        first = seen_ids.setdefault(key, lineno)
        if first != lineno:
            return Item(lineno, fp, id=item_id, error=_input_error(
                "duplicate_id", f"line {lineno}: id {item_id!r} was already used on line {first}; ids must be unique "
                "so replies can be joined back: give this line its own id"))
    try:
        _validate(payload)
    except ValueError as exc:  # InvalidRequestError is a ValueError
        return Item(lineno, fp, id=item_id, error=_input_error(getattr(exc, "kind", "invalid_request"),
                                                                f"line {lineno}: {_one_line(str(exc))}"))
    return Item(lineno, fp, id=item_id, payload=payload)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


# ------------------------------------------------------------------------------------------------ errors as data
def _is_control_plane(exc: BaseException) -> bool:
    """The adapter lost what runs the processor (Modal's control plane), as opposed to one item failing."""
    if getattr(exc, "kind", None) == "modal_unreachable":
        return True
    module = type(exc).__module__ or ""
    if module.startswith(("modal", "grpclib")) and type(exc).__name__ in (
            "ConnectionError", "TimeoutError", "StreamTerminatedError", "ClientClosedError"):
        return True
    from providers.errors import ProviderError

    return isinstance(exc, OSError) and not isinstance(exc, ProviderError)


def _error_object(exc: BaseException) -> dict[str, Any]:
    """``{type, kind, message, retryable}``: one line, secret-free, JSON-safe."""
    from theory_modal.adapters import error_dict

    if _is_control_plane(exc):
        detail = _ERRNO_PREFIX.sub("", str(exc)).strip()
        if isinstance(exc, OSError) and exc.errno is not None:
            detail = os.strerror(exc.errno).lower() if exc.errno > 0 else detail
        out = {"type": "ModalUnreachableError", "kind": "modal_unreachable",
               "message": f"control plane lost before this item was answered ({detail or type(exc).__name__}); "
                          f"{_RESUME_HINT}"}
        if getattr(exc, "kind", None) == "modal_unreachable":
            out["message"] = f"{str(exc).rstrip('.')}; {_RESUME_HINT}"
    else:
        out = dict(error_dict(exc))
    from providers.errors import redact

    out["message"] = _one_line(redact(str(out.get("message") or type(exc).__name__)))
    out["retryable"] = bool(out.get("retryable", getattr(exc, "retryable", _is_control_plane(exc))))
    return {"type": out.pop("type"), "kind": out.pop("kind"), "message": out.pop("message"),
            "retryable": out.pop("retryable"), **out}


def _scrub(obj: Any) -> Any:
    """Make a value encodable as strict UTF-8 JSON: lone surrogates -> U+FFFD, non-finite floats -> null."""
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {_scrub(str(k)): _scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_scrub(v) for v in obj]
    return obj


def encode_line(obj: dict[str, Any]) -> bytes:
    """One output line: valid UTF-8 JSON + ``\\n``, whatever the reply held."""
    try:
        return (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError):
        return (json.dumps(_scrub(obj), ensure_ascii=False, allow_nan=False, default=str) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------------------ the output file
_write = os.write  # module-level so tests can inject short writes and full disks


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte or raise: a short write is retried for the rest; 0 bytes written is an error."""
    view = memoryview(data)
    while view:
        n = _write(fd, view)
        if not n or n < 0:
            raise OSError(errno_mod.EIO, "the write made no progress")
        view = view[n:]


class OutputFile:
    """The output JSONL under an exclusive lock, appended one whole line at a time."""

    def __init__(self, path: str) -> None:
        # The real path: a resume swaps a rewritten file in by rename, which must replace the file a symlink
        # names (not the symlink), and every spelling of one output must meet the same lock.
        self.path = os.path.realpath(path)
        self.fd = -1
        self.size = 0  # bytes up to and including the last whole line

    # -------------------------------------------------------------- locking
    def open_locked(self) -> None:
        import fcntl

        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
            except IsADirectoryError:
                raise BatchInputError(f"--output {self.path} is a directory: name a file") from None
            except FileNotFoundError:
                raise BatchInputError(f"--output {self.path}: the directory does not exist") from None
            except PermissionError:
                raise BatchInputError(f"--output {self.path}: permission denied") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO blocks once full, a device cannot be cut back
                os.close(fd)
                raise BatchInputError(f"--output {self.path} is not a regular file: a batch writes a file it can "
                                      "lock, cut back and --resume; name a file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BatchInUseError(
                    f"--output {self.path} is in use by another batch: wait for it to finish, or choose another --output"
                ) from None
            # A resume may have swapped a new file in while we waited: lock the file the path names now.
            try:
                same = _same_file(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                self.size = os.fstat(fd).st_size
                self._remove_stale_temps()
                return
            os.close(fd)
        raise BatchInUseError(f"--output {self.path} keeps changing under us: is another program rewriting it?")

    def _remove_stale_temps(self) -> None:
        """Temps are only made under the lock, so any left now come from a run that was killed mid-rewrite."""
        d, name = os.path.split(self.path)
        for stale in glob.glob(glob.escape(os.path.join(d, f".{name}.batch-")) + "*.tmp"):
            try:
                os.unlink(stale)
            except OSError:
                pass

    # -------------------------------------------------------------- content
    def read_existing(self) -> bytes:
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def truncate_all(self) -> None:
        os.ftruncate(self.fd, 0)
        self.size = 0

    def replace_with(self, lines: list[bytes]) -> None:
        """Atomically make the file exactly ``lines``: temp file (locked before it is visible), fsync, rename."""
        import fcntl

        d, name = os.path.split(self.path)
        tmp = os.path.join(d, f".{name}.batch-{os.getpid()}-{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(fd, stat.S_IMODE(os.fstat(self.fd).st_mode))
            size = 0
            for line in lines:
                _write_all(fd, line)
                size += len(line)
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException as exc:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise BatchError(f"could not rewrite --output {self.path} to the replies worth keeping "
                                 f"({exc.strerror or exc}); it was left unchanged: free space and try again") from None
            raise
        _fsync_dir(d)
        old, self.fd, self.size = self.fd, fd, size
        os.close(old)  # releases the old file's lock only now that the new one is locked and in place

    def append(self, data: bytes) -> None:
        """Append one whole line, or cut the file back to its last whole line and raise ``_WriteFailed``."""
        try:
            _write_all(self.fd, data)
        except OSError as exc:
            cut = ""
            try:
                os.ftruncate(self.fd, self.size)
            except OSError as exc2:
                cut = f" (and cutting it back failed too: {exc2.strerror or exc2})"
            raise _WriteFailed(f"{exc.strerror or exc}{cut}") from None
        self.size += len(data)

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            except OSError:
                pass
            os.close(self.fd)  # releases the lock
            self.fd = -1


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _previous_lines(data: bytes) -> list[tuple[bytes, dict[str, Any]]]:
    """The whole, parseable JSON-object lines of a previous output (a torn last line has no newline: dropped)."""
    out = []
    parts = data.split(b"\n")
    for raw in parts[:-1]:  # the last part is empty, or a torn line with no newline
        value, kind, _ = parse_json_line(raw)
        if kind is None and isinstance(value, dict):
            out.append((raw + b"\n", value))
    return out


# ------------------------------------------------------------------------------------------------ summary
@dataclass
class BatchSummary:
    """What a run did. ``kept_*`` are replies kept from earlier runs; everything else is this run's work."""

    output: str = ""
    lines: int = 0  #: non-blank input lines
    kept: int = 0  #: replies kept from an earlier run (fingerprint matched)
    rerun_changed: int = 0  #: lines whose earlier reply answered different content (edited line, other ref/mode/defaults)
    retried: int = 0  #: lines whose earlier output was an error, run again
    new: int = 0  #: lines with no earlier output
    ok: int = 0  #: replies written by this run
    failed: int = 0  #: error lines written by this run (input errors included)
    input_errors: int = 0  #: of ``failed``: lines that were never sent (bad JSON, wrong mode, duplicate id, ...)
    duplicate_ids: int = 0
    not_started: int = 0  #: left for --resume (stopped early)
    unanswered: int = 0  #: in flight when the run gave up waiting (no line; --resume runs them)
    tokens_in: int = 0
    tokens_out: int = 0
    usd_micros: int = 0
    cost_unknown: int = 0
    kept_tokens_in: int = 0
    kept_tokens_out: int = 0
    kept_usd_micros: int = 0
    latencies_ms: list[int] = field(default_factory=list)
    stopped: str | None = None  #: interrupted, max_usd, max_errors, control_plane, write_failed
    reason: str | None = None  #: the one-line reason for ``stopped``
    exit_code: int = EXIT_OK

    @property
    def done(self) -> int:
        return self.kept + self.ok + self.failed

    def _pct(self, q: float) -> int:
        lat = sorted(self.latencies_ms)
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output, "lines": self.lines, "done": self.done,
            "kept": {"lines": self.kept, "tokens_in": self.kept_tokens_in, "tokens_out": self.kept_tokens_out,
                     "usd_micros": self.kept_usd_micros},
            "run": {"ok": self.ok, "failed": self.failed, "input_errors": self.input_errors,
                    "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "usd_micros": self.usd_micros,
                    "cost_unknown": self.cost_unknown, "latency_p50_ms": self._pct(0.5),
                    "latency_p90_ms": self._pct(0.9)},
            "ran": {"new": self.new, "rerun_changed": self.rerun_changed, "retried": self.retried},
            "duplicate_ids": self.duplicate_ids, "not_started": self.not_started, "unanswered": self.unanswered,
            "stopped": self.stopped, "reason": self.reason, "exit_code": self.exit_code,
        }

    def text(self) -> str:
        cost = f"${self.usd_micros / 1e6:.6f}" + (f" (+{self.cost_unknown} unpriced)" if self.cost_unknown else "")
        parts = [f"{self.done} of {self.lines} lines done"]
        if self.kept:
            parts.append(f"kept {self.kept} from before (${self.kept_usd_micros / 1e6:.6f})")
        parts.append(f"this run: {self.ok} ok, {self.failed} failed"
                     + (f" ({self.input_errors} bad input)" if self.input_errors else ""))
        ran = [f"{self.new} new"]
        if self.rerun_changed:
            ran.append(f"{self.rerun_changed} re-run because their input changed")
        if self.retried:
            ran.append(f"{self.retried} retried after an error")
        parts.append(", ".join(ran))
        parts.append(f"tokens {self.tokens_in} in / {self.tokens_out} out · cost {cost} · "
                     f"latency p50 {self._pct(0.5)} ms, p90 {self._pct(0.9)} ms")
        if self.duplicate_ids:
            parts.append(f"{self.duplicate_ids} duplicate id(s)")
        return " · ".join(parts) + f" · {self.output}"


# ------------------------------------------------------------------------------------------------ the engine
@dataclass
class BatchOptions:
    """Everything a run needs besides the adapter. ``input_data`` is the input file's bytes."""

    ref: str
    mode: str
    output: str
    input_data: bytes
    input_stat: os.stat_result | None = None  #: the input's identity, to refuse output == input
    concurrency: int = 8
    resume: bool = False
    overwrite: bool = False
    max_usd: float | None = None
    max_errors: int | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    grace_seconds: float = 30.0
    max_line_bytes: int = MAX_LINE_BYTES


class Batch:
    """One run. ``run()`` returns a :class:`BatchSummary`; ``request_stop()`` (e.g. from a SIGINT handler)
    stops starting new items, and a second call stops waiting for the ones in flight."""

    def __init__(self, options: BatchOptions, adapter: Any, *,
                 on_progress: Callable[[BatchSummary], None] | None = None) -> None:
        self.o = options
        self.adapter = adapter
        self.on_progress = on_progress
        self.summary = BatchSummary(output=options.output)
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._stop_reason = "interrupted"

    def request_stop(self, reason: str = "interrupted") -> None:
        if self._stop.is_set():
            self._abandon.set()
        else:
            self._stop_reason = reason
            self._stop.set()

    # -------------------------------------------------------------- set-up
    def _check_options(self) -> str:
        o = self.o
        if o.resume and o.overwrite:
            raise BatchInputError("--resume and --overwrite contradict each other: pick one")
        if o.concurrency < 1:
            raise BatchInputError("--concurrency must be at least 1")
        if o.max_usd is not None and not (o.max_usd >= 0 and math.isfinite(o.max_usd)):
            raise BatchInputError("--max-usd must be a non-negative number of dollars, e.g. --max-usd 5")
        if o.max_errors is not None and o.max_errors < 1:
            raise BatchInputError("--max-errors must be at least 1")
        from theory_modal.catalog import resolve

        return resolve(o.ref).ref

    def _check_not_input(self, out: OutputFile) -> None:
        st = self.o.input_stat
        if st is not None and stat.S_ISREG(st.st_mode) and _same_file(st, os.fstat(out.fd)):
            raise BatchInputError(f"--output {self.o.output} is the input file: writing to it would destroy the "
                                  "input; choose another --output")

    def _plan(self, out: OutputFile, items: list[Item]) -> tuple[list[bytes], set[int]]:
        """Decide which earlier replies to keep; rewrite the output to exactly them."""
        s = self.summary
        previous = _previous_lines(out.read_existing()) if self.o.resume else []
        by_line = {it.line: it for it in items}
        kept: dict[int, bytes] = {}
        seen: dict[int, str] = {}  # line -> "match" (error line with our fingerprint) or "other"
        for raw, obj in previous:
            line = obj.get("line")
            if isinstance(line, bool) or not isinstance(line, int) or line not in by_line:
                continue
            match = obj.get("fingerprint") == by_line[line].fingerprint
            if match and "error" not in obj and line not in kept and by_line[line].error is None:
                kept[line] = raw
                u = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
                s.kept_tokens_in += _int(u.get("tokens_in"))
                s.kept_tokens_out += _int(u.get("tokens_out"))
                s.kept_usd_micros += _int(u.get("usd_micros"))
            elif seen.get(line) != "match":
                seen[line] = "match" if match else "other"
        for it in items:
            if it.line in kept:
                continue
            state = seen.get(it.line)
            if state == "match":
                s.retried += 1
            elif state == "other":
                s.rerun_changed += 1
            else:
                s.new += 1
        s.kept = len(kept)
        lines = [kept[n] for n in sorted(kept)]
        if self.o.resume:
            if out.size or lines:
                out.replace_with(lines)
        elif out.size:
            out.truncate_all()  # --overwrite (checked by the caller)
        return lines, set(kept)

    # -------------------------------------------------------------- the run
    def run(self) -> BatchSummary:
        o, s = self.o, self.summary
        ref = self._check_options()
        items, _ = parse_input(o.input_data, ref=ref, mode=o.mode, defaults=o.defaults, max_line_bytes=o.max_line_bytes)
        s.lines = len(items)
        s.duplicate_ids = sum(1 for it in items if it.error and it.error["kind"] == "duplicate_id")
        out = OutputFile(o.output)
        out.open_locked()
        try:
            self._check_not_input(out)
            if out.size and not (o.resume or o.overwrite):
                raise BatchInputError(
                    f"--output {o.output} already holds results: pass --resume to keep them and finish the rest, "
                    "or --overwrite to replace them"
                )
            _, kept = self._plan(out, items)
            todo = [it for it in items if it.line not in kept]
            self._execute(out, ref, todo)
        except _WriteFailed as exc:
            s.stopped = "write_failed"
            s.reason = (f"could not write to {o.output} ({exc}); it was cut back to its last whole line. "
                        f"{s.done} of {s.lines} lines done; free space (or raise the limit) and {_RESUME_HINT}")
        finally:
            out.close()
        s.exit_code = self._exit_code()
        return s

    def _exit_code(self) -> int:
        s = self.summary
        if s.stopped == "interrupted":
            return EXIT_INTERRUPTED
        if s.stopped or s.failed or s.done < s.lines:
            return EXIT_FAILURE
        return EXIT_OK

    def _line(self, ref: str, it: Item) -> dict[str, Any]:
        out: dict[str, Any] = {"line": it.line}
        if it.id is not None:
            out["id"] = it.id
        out["fingerprint"] = it.fingerprint
        out["ref"] = ref
        out["mode"] = self.o.mode
        return out

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.summary)

    def _execute(self, out: OutputFile, ref: str, todo: list[Item]) -> None:
        o, s = self.o, self.summary
        for it in todo:  # lines that need no call are answered at once
            if it.error is not None:
                out.append(encode_line({**self._line(ref, it), "error": it.error}))
                s.failed += 1
                s.input_errors += 1
        self._progress()
        pending = deque(it for it in todo if it.error is None)
        results: queue.Queue[tuple[Item, dict[str, Any] | None, BaseException | None]] = queue.Queue()
        inflight: dict[int, Item] = {}
        call_failures = 0
        max_cost = -1  # highest usd_micros of a finished item; -1 until one is priced
        cap = None if o.max_usd is None else int(round(o.max_usd * 1_000_000))
        stop_deadline: float | None = None
        stopping: str | None = None  # why no new item starts

        def worker(it: Item) -> None:
            try:
                results.put((it, self.adapter.run(o.ref, it.payload), None))
            except BaseException as exc:  # noqa: BLE001 - one item's failure is data for its line
                results.put((it, None, exc))

        def budget_allows() -> bool:
            if cap is None:
                return True
            if max_cost < 0:
                return not inflight and s.usd_micros <= cap  # probe one item until a price is known
            return s.usd_micros + (len(inflight) + 1) * max_cost <= cap

        while True:
            if self._stop.is_set() and stop_deadline is None:  # Ctrl-C: a bounded wait for what is in flight
                stop_deadline = time.monotonic() + o.grace_seconds
                stopping, s.reason = self._stop_reason, None
            while stopping is None and pending and len(inflight) < o.concurrency:
                if not budget_allows():
                    if not inflight:
                        stopping = "max_usd"
                        est = max(max_cost, 0)
                        s.reason = (f"--max-usd {o.max_usd:g} reached: ${s.usd_micros / 1e6:.6f} spent, the next item "
                                    f"would cost about ${est / 1e6:.6f}")
                    break
                it = pending.popleft()
                inflight[it.line] = it
                threading.Thread(target=worker, args=(it,), name=f"batch-line-{it.line}", daemon=True).start()
            if not inflight:
                break
            if stopping == "control_plane" and stop_deadline is None:
                stop_deadline = time.monotonic() + o.grace_seconds
            if self._abandon.is_set() or (stop_deadline is not None and time.monotonic() >= stop_deadline):
                break
            try:
                it, resp, exc = results.get(timeout=0.05)
            except queue.Empty:
                continue
            del inflight[it.line]
            line = self._line(ref, it)
            answered = exc is None and isinstance(resp, dict)
            if answered:
                line.update((k, v) for k, v in resp.items() if k not in line)
                out.append(encode_line(line))
                s.ok += 1
                u = resp.get("usage") or {}
                s.latencies_ms.append(_int(u.get("latency_ms")))
                spent = u
            else:
                error = resp.get("error") if isinstance(resp, dict) and exc is None else None
                if exc is not None and _is_control_plane(exc) and stopping is None:
                    stopping = "control_plane"
                    s.reason = _error_object(exc)["message"].replace(f"; {_RESUME_HINT}", "")
                error = error if isinstance(error, dict) else _error_object(
                    exc if exc is not None else RuntimeError("the adapter returned no response"))
                out.append(encode_line({**line, "error": error}))
                s.failed += 1
                # A failure that reports usage was paid for (a structured reply that did not validate after its
                # re-asks): it counts towards the spend and --max-usd like a reply.
                spent = error.get("usage") if isinstance(error.get("usage"), dict) else None
            if spent is not None:
                s.tokens_in += _int(spent.get("tokens_in"))
                s.tokens_out += _int(spent.get("tokens_out"))
                cost = spent.get("usd_micros")
                if isinstance(cost, int) and not isinstance(cost, bool):
                    s.usd_micros += cost
                    max_cost = max(max_cost, cost)
                else:
                    s.cost_unknown += 1
                    if cap is not None and stopping is None:
                        stopping = "max_usd"
                        s.reason = (f"line {it.line}: the reply's cost is unknown (model not priced), so --max-usd "
                                    "cannot be enforced; drop --max-usd for unpriced models")
            if not answered:
                call_failures += 1
                if o.max_errors is not None and call_failures >= o.max_errors and stopping is None:
                    stopping = "max_errors"
                    s.reason = f"--max-errors {o.max_errors} reached: {call_failures} items failed"
            self._progress()

        # Whatever is still in flight after the grace period (or a second Ctrl-C) gets no line: --resume runs it.
        if stopping == "control_plane":
            for it in list(inflight.values()):
                out.append(encode_line({**self._line(ref, it), "error": {
                    "type": "ModalUnreachableError", "kind": "modal_unreachable",
                    "message": f"control plane lost; no answer within {o.grace_seconds:g}s; {_RESUME_HINT}",
                    "retryable": True}}))
                s.failed += 1
            inflight.clear()
        s.unanswered = len(inflight)
        s.not_started = len(pending)
        if stopping == "interrupted" and not inflight and not pending:
            stopping = None  # the stop came after the last item started, and everything finished: nothing to resume
        if stopping is not None:
            s.stopped = stopping
            tail = f"{s.done} of {s.lines} lines done; {_RESUME_HINT}"
            if stopping == "interrupted":
                s.reason = tail
            else:
                s.reason = f"{s.reason}; {tail}" if s.reason else tail
        self._progress()


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0
