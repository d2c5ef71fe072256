"""Fixtures for the emulator's own tests: the toy apps and named secrets. ``modal_emulator`` and ``modal_env``
come from the package's pytest plugin (entry point ``theory_modal_emulator``), with no import here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulator_helpers import APPS, SECRET_VALUE

from theory_modal.testing.emulator import ModalEmulator


@pytest.fixture(scope="session")
def modal_emulator_secrets() -> dict[str, dict[str, str]]:
    return {"emu-test-secret": {"EMU_SECRET_TOKEN": SECRET_VALUE, "EMU_SECOND_KEY": "second"}}


@pytest.fixture(autouse=True)
def _no_emulator_gaps(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that uses the shared emulator must leave no unimplemented RPC and no handler error behind."""
    yield
    if "modal_emulator" in request.fixturenames:
        emulator: ModalEmulator = request.getfixturevalue("modal_emulator")
        assert emulator.unimplemented_calls == [], "the client called RPCs the emulator does not implement"
        assert emulator.server_errors == [], "RPC handlers raised unexpected exceptions"


@pytest.fixture(scope="session")
def emu_app(modal_emulator: ModalEmulator) -> str:
    """``apps/emu_app.py`` deployed once (through the real ``modal deploy``) for the whole session."""
    modal_emulator.deploy(APPS / "emu_app.py")
    return "emu-test"
