"""Attachments: bytes with a MIME type sniffed from the content, a size cap and a sha256 id.

Images (png, jpeg, gif, webp) go to LiteLLM as data-URL content parts; UTF-8 text is inlined as text.
Anything else is refused up front with an error naming the file and the supported types.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.errors import UnsupportedAttachmentError

__all__ = ["Attachment", "DEFAULT_MAX_BYTES", "SUPPORTED_MIME_TYPES", "sniff_mime"]

#: Default size cap per attachment: OpenAI's own per-image limit is about 20 MB.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

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
        p = Path(path)
        label = name or p.name
        if p.is_symlink() and root is not None:
            target, base = p.resolve(), Path(root).resolve()
            if not target.is_relative_to(base):
                raise UnsupportedAttachmentError(
                    f"attachment {label!r}: {p} is a symlink to {target}, outside the working tree {base}; "
                    "pass the real path if you mean that file"
                )
        if not p.exists():
            raise UnsupportedAttachmentError(f"attachment {label!r}: no such file: {p}")
        if p.is_dir():
            raise UnsupportedAttachmentError(f"attachment {label!r}: {p} is a directory, not a file")
        size = p.stat().st_size
        if size > max_bytes:  # check before reading a huge file into memory
            raise UnsupportedAttachmentError(
                f"attachment {label!r} is {_human(size)}, over the {_human(max_bytes)} cap: "
                "send a smaller file or raise max_bytes"
            )
        data = p.read_bytes()
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
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    # ------------------------------------------------------------------ JSON-safe form (Modal payloads, files)
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mime": self.mime, "data_b64": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Attachment:
        """Rebuild and re-validate (content sniffing and the cap apply again on the far side)."""
        if not isinstance(data, dict) or not isinstance(data.get("data_b64"), str):
            raise UnsupportedAttachmentError("an attachment must be {'name', 'mime', 'data_b64'} with base64 data")
        try:
            raw = base64.b64decode(data["data_b64"], validate=True)
        except ValueError as exc:
            raise UnsupportedAttachmentError(f"attachment {data.get('name')!r}: data_b64 is not valid base64") from exc
        return cls.from_bytes(raw, data.get("mime"), name=str(data.get("name") or "attachment"), max_bytes=max_bytes)
