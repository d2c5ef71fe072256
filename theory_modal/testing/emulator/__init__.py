"""A loopback emulator of Modal's control plane, for hermetic tests of Modal apps (modal==1.6.4 only).

It serves the real ``modal`` client and CLI over gRPC on 127.0.0.1 and runs function bodies in real
``modal._container_entrypoint`` processes on this machine, so deploy/run/call paths, argument passing, secrets
plumbing, source mounting, retries and timeouts are exercised end to end. Images are not built (containers run on
this interpreter; only ``ENV`` lines apply), and there are no GPUs, snapshots, web endpoints or schedules.

Public API:
* :class:`ModalEmulator` (``start``/``stop``, ``url``, ``client_env``, ``run_cli``, ``deploy``, diagnostics);
* pytest fixtures ``modal_emulator`` / ``modal_env`` (a ``pytest11`` plugin: no import needed once
  ``theory-modal[testing]`` is installed);
* the CLI ``theory-modal emulator`` / ``python -m theory_modal.testing.emulator`` (:func:`main`).

Names load lazily, so the CLI and the pytest plugin can import submodules without paying for grpclib and the
server until an emulator is actually started.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PINNED_MODAL_VERSION",
    "ContainerInfo",
    "EmulatorError",
    "ModalEmulator",
    "ModalVersionError",
    "check_modal_version",
    "main",
]

_WHERE = {
    "main": ".cli",
    "ContainerInfo": ".emulator",
    "EmulatorError": ".emulator",
    "ModalEmulator": ".emulator",
    "PINNED_MODAL_VERSION": ".version",
    "ModalVersionError": ".version",
    "check_modal_version": ".version",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
