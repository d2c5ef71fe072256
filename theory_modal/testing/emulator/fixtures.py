"""Pytest fixtures for suites that test Modal apps against the emulator: a ``pytest11`` plugin.

With ``theory-modal[testing]`` installed the fixtures are available in every suite with no import (the plugin is
registered as ``theory_modal_emulator``; ``pytest -p no:theory_modal_emulator`` turns it off). Without the
plugin, ``from theory_modal.testing.emulator.fixtures import *`` in a ``conftest.py`` does the same. Then::

    def test_it(modal_emulator, modal_env):
        modal_emulator.deploy("path/to/app.py")
        assert modal.Function.from_name("my-app", "f").remote(1) == 2

* ``modal_emulator`` (session): a started :class:`ModalEmulator`; stopped (containers and state removed) at the
  end of the session. Its secrets come from the ``modal_emulator_secrets`` fixture, which a suite may override.
* ``modal_env`` (function): points this process's modal client at the emulator (environment variables set with
  ``monkeypatch``, other ``MODAL_*`` variables removed, the cached client reset before and after the test).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .emulator import ModalEmulator

# This module is loaded into every pytest session of any environment that has theory-modal installed (entry
# points cannot depend on an extra), so it imports nothing heavy: the emulator loads when a test asks for it.


def _emulator_class() -> type[ModalEmulator]:
    """The emulator, or a test error naming the extra that provides the modal release it speaks."""
    from .version import ModalVersionError, check_modal_version

    try:
        check_modal_version()
        from .emulator import ModalEmulator
    except (ImportError, ModalVersionError) as exc:
        pytest.fail(
            f"the modal_emulator fixture needs pip install 'theory-modal[testing]': {str(exc).splitlines()[0]}",
            pytrace=False,
        )
    return ModalEmulator

__all__ = ["modal_emulator", "modal_emulator_secrets", "modal_env", "reset_modal_client"]


def reset_modal_client() -> None:
    """Forget the process-wide client that ``modal`` caches from the environment (closing it).

    The client reads ``MODAL_SERVER_URL``/``MODAL_TOKEN_*`` once and caches itself, so without this a test would
    keep talking to whichever server (and with whichever token) the first test used.
    """
    from modal._utils.async_utils import synchronizer
    from modal.client import _Client

    client = _Client._client_from_env
    _Client._set_env_client(None)
    if client is not None:
        # Closing a client whose server is already gone must not fail a test.
        with contextlib.suppress(Exception):
            synchronizer._translate_out(client).close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def modal_emulator_secrets() -> dict[str, dict[str, str]]:
    """Named secrets for the session emulator. Override this fixture in your ``conftest.py`` to provide some."""
    return {}


@pytest.fixture(scope="session")
def modal_emulator(
    modal_emulator_secrets: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModalEmulator]:
    """A running emulator shared by the whole session."""
    emulator = _emulator_class()(secrets=modal_emulator_secrets, state_dir=tmp_path_factory.mktemp("modal-emulator"))
    emulator.start()
    try:
        yield emulator
    finally:
        reset_modal_client()
        emulator.stop()


@pytest.fixture
def modal_env(modal_emulator: ModalEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Point this process's modal client at ``modal_emulator`` for one test; yields the variables set."""
    for key in list(os.environ):
        if key.startswith("MODAL_"):
            monkeypatch.delenv(key)
    env = modal_emulator.client_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_modal_client()
    try:
        yield env
    finally:
        reset_modal_client()
