"""Starting and stopping emulators: process hygiene, the subprocess CLI, the version pin, visible gaps."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import modal
import modal.exception
import pytest
from emulator_helpers import APPS, pid_alive, wait_until, within

from theory_modal.testing.emulator import EmulatorError, ModalEmulator, ModalVersionError, main
from theory_modal.testing.emulator.fixtures import reset_modal_client


@contextmanager
def client_pointed_at(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point this process's modal client at an emulator other than the session one, for a block."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_modal_client()
    try:
        yield
    finally:
        reset_modal_client()


def deploy_lifecycle_app(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modal", "deploy", "lifecycle_app.py"],
        cwd=APPS,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_version_check_names_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modal, "__version__", "1.7.0")
    with pytest.raises(ModalVersionError, match=r"installed modal is 1\.7\.0\. Pin modal==1\.6\.4: pip install 'theory-modal\[testing\]'"):
        ModalEmulator()


def test_client_env_isolates_from_the_developer_config(tmp_path: Path) -> None:
    with ModalEmulator(state_dir=tmp_path) as emulator:
        env = emulator.client_env()
        assert env["MODAL_SERVER_URL"] == f"http://127.0.0.1:{emulator.port}"
        assert {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"} <= env.keys()
        config_path = Path(env["MODAL_CONFIG_PATH"])
        assert not config_path.exists() and config_path.parent == emulator.state_dir
        state_dir = emulator.state_dir
        assert state_dir.parent == tmp_path
    assert not state_dir.exists()
    assert tmp_path.exists()  # only the emulator's own directory is removed


def test_failed_start_cleans_up(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(EmulatorError, match="address already in use"):
            ModalEmulator(port=taken.getsockname()[1], state_dir=tmp_path).start()
    assert list(tmp_path.iterdir()) == []


def test_unimplemented_rpc_fails_fast_and_is_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with ModalEmulator(state_dir=tmp_path) as emulator, client_pointed_at(emulator.client_env(), monkeypatch):
        with pytest.raises(modal.exception.UnimplementedError):
            within(30, modal.Dict.from_name("emu-dict", create_if_missing=True).hydrate)
        assert emulator.unimplemented_calls == ["DictGetOrCreate"]


def test_stop_leaves_no_process_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    emulator = ModalEmulator(max_containers_per_function=2, state_dir=tmp_path).start()
    try:
        with client_pointed_at(emulator.client_env(), monkeypatch):
            deploy_lifecycle_app(emulator.client_env())
            pid_fn = modal.Function.from_name("emu-lifecycle", "pid")
            calls = [within(30, pid_fn.spawn, 1.0) for _ in range(3)]
            worker_pids = {call.get(timeout=30) for call in calls}
            grandchild = within(30, modal.Function.from_name("emu-lifecycle", "spawn_grandchild").remote)
        container_pids = set(emulator.container_pids())
        assert len(worker_pids) == 2, "a backlog should scale `pid` out to max_containers_per_function=2"
        assert worker_pids <= container_pids and len(container_pids) == 3
        assert pid_alive(grandchild)
        state_dir = emulator.state_dir
    finally:
        emulator.stop()
    leftovers = [pid for pid in container_pids | {grandchild} if pid_alive(pid)]
    assert leftovers == [], f"processes left after stop(): {leftovers}"
    assert not state_dir.exists()
    assert emulator.unimplemented_calls == [] and emulator.server_errors == []


@contextmanager
def emulator_subprocess(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``python -m theory_modal.testing.emulator`` in a subprocess; yields it and the client env for it."""
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"some-secret": {"KEY": "value"}}))
    stderr = (tmp_path / "emulator.log").open("w")
    # --state-dir under tmp_path: a SIGKILLed emulator cannot remove its state directory itself.
    command = ["--secrets", str(secrets_file), "--state-dir", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "theory_modal.testing.emulator", *command],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "the emulator did not print its LISTENING line within 30s"
        line = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("LISTENING 127.0.0.1:"), line
        env = {
            "MODAL_SERVER_URL": f"http://{line.split()[1]}",
            "MODAL_TOKEN_ID": "ak-emulator",
            "MODAL_TOKEN_SECRET": "as-emulator",
            "MODAL_CONFIG_PATH": str(tmp_path / "absent.toml"),
        }
        yield process, env
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        stderr.close()


def test_cli_prints_listening_and_exits_0_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with emulator_subprocess(tmp_path) as (process, env):
        deploy_lifecycle_app(env)
        with client_pointed_at(env, monkeypatch):
            container_pid = within(30, modal.Function.from_name("emu-lifecycle", "pid").remote)
        assert pid_alive(container_pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not pid_alive(container_pid)


@pytest.mark.slow
def test_containers_die_with_a_killed_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with emulator_subprocess(tmp_path) as (process, env):
        deploy_lifecycle_app(env)
        with client_pointed_at(env, monkeypatch):
            container_pid = within(30, modal.Function.from_name("emu-lifecycle", "pid").remote)
        process.send_signal(signal.SIGKILL)  # no chance to clean up: the parent-death signal must do it
        process.wait(timeout=30)
        assert wait_until(lambda: not pid_alive(container_pid), timeout=10), "container outlived its emulator"


def test_main_rejects_a_malformed_secrets_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "secrets.json"
    bad.write_text(json.dumps({"name": ["not", "a", "mapping"]}))
    assert main(["--secrets", str(bad)]) == 2
    assert "secret 'name' is a JSON array, expected an object" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # nothing was left installed
