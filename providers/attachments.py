"""Attachments: bytes with a MIME type sniffed from the content, a size cap and a sha256 id.

Images (png, jpeg, gif, webp) go to LiteLLM as data-URL content parts; UTF-8 text is inlined as text.
Anything else is refused up front with an error naming the file and the supported types.

Inputs are hostile until checked: a path must name a regular file (not ``/dev/zero``, a FIFO, a directory or
a device; checked with ``os.stat`` before opening and again on the open descriptor, which is opened
non-blocking so a FIFO swapped in cannot hang the read), and at most ``max_bytes + 1`` bytes are ever read.
A payload dict must be exactly ``{name, mime, data_b64}`` with string values; its base64 length is checked
against the cap before anything is decoded.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from providers.errors import UnsupportedAttachmentError

if TYPE_CHECKING:
    from pathlib import Path

# base64, hashlib (OpenSSL), mimetypes and pathlib are imported where they are used: every provider module
# imports this one for the type, and a call without attachments (most calls) should not load them.

__all__ = [
    "Attachment",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "MAX_NAME_LENGTH",
    "SUPPORTED_MIME_TYPES",
    "b64_length",
    "check_dict",
    "sniff_mime",
]

#: Default size cap per attachment: OpenAI's own per-image limit is about 20 MB.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: Default cap on all attachments of one request together (OpenAI: about 50 MB per request).
DEFAULT_MAX_TOTAL_BYTES = 50 * 1024 * 1024
MAX_NAME_LENGTH = 255
_DICT_KEYS = frozenset({"name", "mime", "data_b64"})


def b64_length(n: int) -> int:
    """Length of the base64 text (with padding) that encodes ``n`` bytes."""
    return 4 * ((n + 2) // 3)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise UnsupportedAttachmentError(
            f"attachment name must be a string of 1..{MAX_NAME_LENGTH} characters, got {type(name).__name__}"
        )
    if any(not ch.isprintable() for ch in name):
        raise UnsupportedAttachmentError(f"attachment name {name!r} holds control characters")
    return name

IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
SUPPORTED_MIME_TYPES = (*IMAGE_MIME_TYPES, "text/plain")


def sniff_mime(data: bytes) -> str | None:
    """MIME type from magic bytes; ``text/plain`` for UTF-8 without NUL bytes; ``None`` when unrecognised."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"\x00" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "text/plain"
    return None


def _human(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


@dataclass(frozen=True)
class Attachment:
    """An attachment ready to send. Build it with :meth:`from_path` or :meth:`from_bytes`."""

    name: str
    mime: str
    data: bytes = field(repr=False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_bytes(
        cls, data: bytes, mime: str | None = None, *, name: str = "attachment", max_bytes: int = DEFAULT_MAX_BYTES
    ) -> Attachment:
        name = _check_name(name)
        if mime is not None and not isinstance(mime, str):
            raise UnsupportedAttachmentError(f"attachment {name!r}: mime must be a string, got {type(mime).__name__}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UnsupportedAttachmentError(f"attachment {name!r}: data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > max_bytes:
            raise UnsupportedAttachmentError(
                f"attachment {name!r} is {_human(len(data))}, over the {_human(max_bytes)} cap: "
                "send a smaller file or raise max_bytes"
            )
        sniffed = sniff_mime(data)
        if sniffed is None:
            raise UnsupportedAttachmentError(
                f"attachment {name!r} has an unsupported type ({mime or 'unrecognised content'}); "
                f"supported: {', '.join(SUPPORTED_MIME_TYPES)}"
            )
        if mime is not None and mime != sniffed and not (mime.startswith("text/") and sniffed == "text/plain"):
            raise UnsupportedAttachmentError(
                f"attachment {name!r} was declared {mime} but its content is {sniffed}: fix the declared type"
            )
        mime = sniffed  # the content decides; text/* declarations normalise to text/plain
        return cls(name=name, mime=mime, data=data)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        root: str | os.PathLike[str] | None = None,
    ) -> Attachment:
        """Read a file. The type comes from the content; a file whose extension claims another type is refused.

        With ``root`` (the CLI passes the working directory), a symlink that resolves outside ``root`` is
        refused: a link must not smuggle in a file the caller did not name (``~/.ssh/id_rsa``, ``/etc/...``).
        """
        import mimetypes
        from pathlib import Path

        p = Path(path)
        label = name or p.name
        if p.is_symlink() and root is not None:
            target, base = p.resolve(), Path(root).resolve()
            if not target.is_relative_to(base):
                raise UnsupportedAttachmentError(
                    f"attachment {label!r}: {p} is a symlink to {target}, outside the working tree {base}; "
                    "pass the real path if you mean that file"
                )
        data = _read_regular_file(p, label, max_bytes)
        sniffed = sniff_mime(data)
        guessed, _ = mimetypes.guess_type(p.name)
        if guessed and sniffed and guessed != sniffed and (guessed in SUPPORTED_MIME_TYPES or sniffed != "text/plain"):
            raise UnsupportedAttachmentError(
                f"attachment {label!r}: the extension says {guessed} but the content is {sniffed}; rename the file "
                "or check it is the file you meant"
            )
        return cls.from_bytes(data, sniffed, name=label, max_bytes=max_bytes)

    # ------------------------------------------------------------------ derived
    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.data).hexdigest()

    @property
    def is_image(self) -> bool:
        return self.mime in IMAGE_MIME_TYPES

    @property
    def text(self) -> str:
        if self.is_image:
            raise ValueError(f"attachment {self.name!r} is an image, not text")
        return self.data.decode("utf-8")

    def data_url(self) -> str:
        import base64

        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    # ------------------------------------------------------------------ JSON-safe form (Modal payloads, files)
    def to_dict(self) -> dict[str, Any]:
        import base64

        return {"name": self.name, "mime": self.mime, "data_b64": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_dict(cls, data: object, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Attachment:
        """Rebuild and re-validate (shape, base64 length before decoding, content sniffing and the cap apply
        again on the far side). Every malformed dict is an :class:`UnsupportedAttachmentError`."""
        check_dict(data, max_bytes=max_bytes)
        assert isinstance(data, dict)
        import base64

        try:
            raw = base64.b64decode(data["data_b64"], validate=True)
        except ValueError:
            raise UnsupportedAttachmentError(
                f"attachment {data['name']!r}: data_b64 is not valid base64"
            ) from None
        return cls.from_bytes(raw, data.get("mime"), name=data["name"], max_bytes=max_bytes)


def check_dict(data: object, *, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Check an attachment's JSON form without decoding it; return its decoded size bound in bytes.

    Used by adapters before a payload is shipped (a 267 MB attachment is refused here, not in the container)
    and by :meth:`Attachment.from_dict` on the far side."""
    if not isinstance(data, dict):
        raise UnsupportedAttachmentError(
            f"an attachment must be an object {{name, mime, data_b64}}, got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in set(data) - _DICT_KEYS)
    if unknown:
        raise UnsupportedAttachmentError(f"attachment has unknown field(s) {unknown}; fields: name, mime, data_b64")
    if "name" not in data or "data_b64" not in data:
        raise UnsupportedAttachmentError("an attachment needs 'name' and 'data_b64' (and optionally 'mime')")
    name = _check_name(data["name"])
    mime = data.get("mime")
    if mime is not None and not isinstance(mime, str):
        raise UnsupportedAttachmentError(f"attachment {name!r}: mime must be a string, got {type(mime).__name__}")
    b64 = data["data_b64"]
    if not isinstance(b64, str):
        raise UnsupportedAttachmentError(f"attachment {name!r}: data_b64 must be a base64 string, got {type(b64).__name__}")
    if len(b64) > b64_length(max_bytes):
        raise UnsupportedAttachmentError(
            f"attachment {name!r} is over the {_human(max_bytes)} cap ({len(b64)} base64 characters): "
            "send a smaller file"
        )
    return len(b64) * 3 // 4


def _read_regular_file(p: Path, label: str, max_bytes: int) -> bytes:
    """Read a regular file, at most ``max_bytes + 1`` bytes: never a device, FIFO or directory, never block."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise UnsupportedAttachmentError(f"attachment {label!r}: no such file: {p}") from None
    except OSError as exc:
        raise UnsupportedAttachmentError(f"attachment {label!r}: cannot read {p} ({exc.strerror})") from None
    _require_regular(st, p, label)
    if st.st_size > max_bytes:  # check before reading a huge file into memory
        raise UnsupportedAttachmentError(
            f"attachment {label!r} is {_human(st.st_size)}, over the {_human(max_bytes)} cap: "
            "send a smaller file or raise max_bytes"
        )
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise UnsupportedAttachmentError(f"attachment {label!r}: cannot open {p} ({exc.strerror})") from None
    try:
        _require_regular(os.fstat(fd), p, label)  # the path may have been swapped since the stat above
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > max_bytes:  # the file grew after the stat
        raise UnsupportedAttachmentError(
            f"attachment {label!r} is over the {_human(max_bytes)} cap: send a smaller file or raise max_bytes"
        )
    return b"".join(chunks)


def _require_regular(st: os.stat_result, p: Path, label: str) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return
    what = (
        "a directory" if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
        else "a character device" if stat.S_ISCHR(mode)
        else "a block device" if stat.S_ISBLK(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise UnsupportedAttachmentError(f"attachment {label!r}: {p} is {what}, not a regular file")
