"""The real ``modal`` CLI against the emulator: deploy, run, redeploy, failures surfaced to callers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import modal
import modal.exception
import pytest
from emulator_helpers import APPS, pid_alive, wait_until, within

from theory_modal.testing.emulator import EmulatorError, ModalEmulator


def test_deploy_via_cli(modal_emulator: ModalEmulator) -> None:
    result = modal_emulator.run_cli(["deploy", "lifecycle_app.py"], cwd=APPS)
    assert result.returncode == 0, result.stderr
    assert "App deployed" in result.stdout
    listing = modal_emulator.run_cli(["app", "list"])
    assert listing.returncode == 0 and "emu-lifecycle" in listing.stdout


def test_modal_run_streams_container_output_and_stops_its_containers(modal_emulator: ModalEmulator) -> None:
    before = {info.task_id for info in modal_emulator.containers()}
    result = modal_emulator.run_cli(["run", "run_app.py", "--word", "hey"], cwd=APPS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CONTAINER-SAYS HEY" in result.stdout  # printed in the container, streamed through AppGetLogs
    assert "LOCAL-RESULT HEY" in result.stdout
    assert "App completed" in result.stdout
    # AppClientDisconnect stopped the ephemeral app's container before the CLI got `app_done`.
    assert {info.task_id for info in modal_emulator.containers()} <= before
    assert "CONTAINER-SAYS HEY" in modal_emulator.app_logs("emu-run")


def test_deploy_with_unknown_secret_fails(modal_emulator: ModalEmulator, tmp_path: Path) -> None:
    app_file = tmp_path / "needs_secret.py"
    app_file.write_text(
        textwrap.dedent(
            """
            import modal
            app = modal.App("emu-needs-secret")

            @app.function(secrets=[modal.Secret.from_name("emu-test-secret", required_keys=["NOT_THERE"])])
            def f():
                return 1
            """
        )
    )
    with pytest.raises(EmulatorError, match="NOT_THERE"):
        modal_emulator.deploy(app_file)


@pytest.mark.usefixtures("modal_env")
def test_import_failure_in_container_reaches_the_caller(modal_emulator: ModalEmulator) -> None:
    modal_emulator.deploy(APPS / "broken_app.py")
    with pytest.raises(ModuleNotFoundError, match="emu_helpers"):
        within(30, modal.Function.from_name("emu-broken", "uses_helper").remote, "x")
    with pytest.raises(ModuleNotFoundError):  # and again: no hang on the second attempt either
        within(30, modal.Function.from_name("emu-broken", "uses_helper").spawn, "y").get(timeout=30)


VERSIONED_APP = """
import os
import modal

app = modal.App("emu-versioned")

@app.function()
def version() -> tuple:
    return ({version!r}, os.getpid())
"""


@pytest.mark.usefixtures("modal_env")
def test_redeploy_replaces_containers(modal_emulator: ModalEmulator, tmp_path: Path) -> None:
    app_file = tmp_path / "versioned_app.py"
    app_file.write_text(VERSIONED_APP.format(version="v1"))
    modal_emulator.deploy(app_file)
    v1, old_pid = within(30, modal.Function.from_name("emu-versioned", "version").remote)
    assert v1 == "v1"

    app_file.write_text(VERSIONED_APP.format(version="v2"))
    modal_emulator.deploy(app_file)
    v2, new_pid = within(30, modal.Function.from_name("emu-versioned", "version").remote)
    assert v2 == "v2"
    assert new_pid != old_pid
    assert wait_until(lambda: not pid_alive(old_pid), timeout=15), "the old container outlived the redeploy"
