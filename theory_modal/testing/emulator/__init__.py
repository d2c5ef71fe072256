"""A loopback emulator of Modal's control plane, for hermetic tests of Modal apps (modal==1.6.4 only).

It serves the real ``modal`` client and CLI over gRPC on 127.0.0.1 and runs function bodies in real
``modal._container_entrypoint`` processes on this machine, so deploy/run/call paths, argument passing, secrets
plumbing, source mounting, retries and timeouts are exercised end to end. Images are not built (containers run on
this interpreter; only ``ENV`` lines apply), and there are no GPUs, snapshots, web endpoints or schedules.

Public API:
* :class:`ModalEmulator` (``start``/``stop``, ``url``, ``client_env``, ``run_cli``, ``deploy``, diagnostics);
* pytest fixtures in :mod:`theory_modal.testing.emulator.fixtures` (``modal_emulator``, ``modal_env``);
* the CLI ``python -m theory_modal.testing.emulator`` (:func:`main`).
"""

from .cli import main
from .emulator import ContainerInfo, EmulatorError, ModalEmulator
from .version import PINNED_MODAL_VERSION, ModalVersionError, check_modal_version

__all__ = [
    "PINNED_MODAL_VERSION",
    "ContainerInfo",
    "EmulatorError",
    "ModalEmulator",
    "ModalVersionError",
    "check_modal_version",
    "main",
]
