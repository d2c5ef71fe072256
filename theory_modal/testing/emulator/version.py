"""The emulator speaks the private gRPC protocol of exactly one modal release; refuse any other.

Modal's client/server API is "not a supported interface ... may change without notice" (``modal/client.py``), and
even within one release it relies on non-obvious fields. A silent mismatch would show up as hangs or confusing
errors deep inside the client, so we fail loudly, up front, naming the pin.
"""

from __future__ import annotations

PINNED_MODAL_VERSION = "1.6.4"


class ModalVersionError(RuntimeError):
    """The installed ``modal`` package is not the release this emulator was written against."""


def installed_modal_version() -> str:
    """Return the version string of the installed ``modal`` client (read at call time, so tests can patch it)."""
    import modal

    return str(modal.__version__)


def check_modal_version(installed: str | None = None) -> None:
    """Raise :class:`ModalVersionError` unless the installed modal is exactly :data:`PINNED_MODAL_VERSION`."""
    version = installed if installed is not None else installed_modal_version()
    if version != PINNED_MODAL_VERSION:
        raise ModalVersionError(
            f"theory_modal.testing.emulator speaks modal {PINNED_MODAL_VERSION}'s private protocol; "
            f"installed modal is {version}. Pin modal=={PINNED_MODAL_VERSION}: pip install 'theory-modal[testing]'."
        )
