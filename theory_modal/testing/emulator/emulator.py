"""``ModalEmulator``: the public, thread-safe handle on a loopback Modal control plane.

The emulator runs on its own event loop in a daemon thread, so synchronous test code (and the modal client, which
has its own loop thread) can use it directly::

    with ModalEmulator(secrets={"llm-keys": {"OPENAI_API_KEY": "sk-test"}}) as emulator:
        emulator.deploy("app.py")                       # the real `modal deploy`, pointed at the emulator
        env = emulator.client_env()                     # MODAL_SERVER_URL / MODAL_TOKEN_* for your own clients
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpclib.server
from modal_proto import api_pb2

from .core import EmulatorConfig, EmulatorCore
from .server import create_server
from .version import check_modal_version

T = TypeVar("T")

START_TIMEOUT_SECS = 30.0


class EmulatorError(RuntimeError):
    """The emulator could not start, or a CLI command run against it failed."""


@dataclass(frozen=True)
class ContainerInfo:
    """A snapshot of one container process, for assertions and debugging."""

    task_id: str
    pid: int | None
    app_id: str
    function_id: str
    function_name: str
    state: str
    exit_code: int | None


class ModalEmulator:
    """A loopback emulator of Modal's control plane for modal==1.6.4, running real container processes.

    Args:
        port: TCP port on 127.0.0.1 (0 picks a free one; see :attr:`port` after :meth:`start`).
        secrets: named secrets of the emulated workspace, ``{"name": {"KEY": "value"}}``.
        state_dir: where a fresh, private state directory is created (default: the system temp dir). The
            emulator only ever deletes the directory it created.
        token_id, token_secret: the only credentials accepted from clients.
        max_containers_per_function: how many containers one (bound) function may scale out to.
        echo_container_output: log container output at INFO instead of DEBUG.
        container_heartbeat_interval: seconds between container heartbeats, which deliver input cancellations
            (Modal's default is 15; 1 lets tests see a cancelled input stop at once).
    """

    def __init__(
        self,
        port: int = 0,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        token_id: str = "ak-emulator",
        token_secret: str = "as-emulator",
        max_containers_per_function: int = 1,
        container_stop_grace: float = 3.0,
        echo_container_output: bool = False,
        container_heartbeat_interval: float = 1.0,
    ) -> None:
        check_modal_version()
        self.config = EmulatorConfig(
            port=port,
            token_id=token_id,
            token_secret=token_secret,
            max_containers_per_function=max_containers_per_function,
            container_stop_grace=container_stop_grace,
            echo_container_output=echo_container_output,
            container_heartbeat_interval=container_heartbeat_interval,
        )
        self._secrets = {name: dict(values) for name, values in (secrets or {}).items()}
        self._state_parent = Path(state_dir) if state_dir is not None else None
        self._state_dir: Path | None = None
        self._core: EmulatorCore | None = None
        self._server: grpclib.server.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ModalEmulator:
        """Bind the server and start serving; returns ``self``. Raises :class:`EmulatorError` on failure."""
        if self._thread is not None:
            raise EmulatorError("emulator already started")
        if self._state_parent is not None:
            self._state_parent.mkdir(parents=True, exist_ok=True)
        self._state_dir = Path(tempfile.mkdtemp(prefix="modal-emulator-", dir=self._state_parent))
        self._core = EmulatorCore(self.config, self._state_dir, self._secrets)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="modal-emulator", daemon=True)
        self._thread.start()
        try:
            self._run(self._async_start(), START_TIMEOUT_SECS)
        except BaseException as exc:
            self.stop()
            raise EmulatorError(f"could not start the Modal emulator: {exc}") from exc
        return self

    async def _async_start(self) -> None:
        assert self._core is not None
        await self._core.start()
        server = create_server(self._core)
        await server.start(self.config.host, self.config.port)
        self._server = server
        listener: Any = server._server  # grpclib has no public accessor for the bound port
        self._port = listener.sockets[0].getsockname()[1]
        self._core.url = self.url

    def stop(self) -> None:
        """Terminate (then kill) every container process group, stop serving, and delete the state directory.

        Safe to call more than once, and after a failed :meth:`start`.
        """
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                self._run(self._async_stop(), self.config.container_stop_grace + 30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
        if loop is not None and not loop.is_running():
            loop.close()
        self._loop = self._thread = None
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None

    async def _async_stop(self) -> None:
        try:
            if self._core is not None:
                await self._core.stop()  # containers first, while they can still talk to the server
        finally:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def __enter__(self) -> ModalEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if self._loop is None:
            coro.close()
            raise EmulatorError("emulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ------------------------------------------------------------------ addresses and client configuration

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self._port}"

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            raise EmulatorError("emulator is not running")
        return self._state_dir

    def client_env(self) -> dict[str, str]:
        """Environment variables that point a modal client (or the ``modal`` CLI) at this emulator.

        ``MODAL_CONFIG_PATH`` names a file that never exists, so a developer's ``~/.modal.toml`` cannot interfere,
        and ``MODAL_ENVIRONMENT`` pins the default environment for the same reason.
        """
        return {
            "MODAL_SERVER_URL": self.url,
            "MODAL_TOKEN_ID": self.config.token_id,
            "MODAL_TOKEN_SECRET": self.config.token_secret,
            "MODAL_CONFIG_PATH": str(self.state_dir / "no-modal-config.toml"),
            "MODAL_ENVIRONMENT": "main",
        }

    # ------------------------------------------------------------------ the modal CLI against the emulator

    def run_cli(
        self,
        args: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 180.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m modal <args>`` with the client environment; output is captured as text."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
        full_env.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
        full_env.update(self.client_env())
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "modal", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def deploy(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 180.0,
    ) -> subprocess.CompletedProcess[str]:
        """``modal deploy path`` (run from the file's directory); raises :class:`EmulatorError` if it fails."""
        app_file = Path(path).resolve()
        args = ["deploy", app_file.name] + (["--name", name] if name else [])
        result = self.run_cli(args, cwd=app_file.parent, env=env, timeout=timeout)
        if result.returncode != 0:
            raise EmulatorError(
                f"`modal deploy {app_file}` failed with exit code {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    # ------------------------------------------------------------------ workspace and diagnostics

    def set_secret(self, name: str, values: Mapping[str, str]) -> None:
        """Create or replace a named secret (containers started afterwards see the new values)."""
        payload = dict(values)

        async def update() -> None:
            assert self._core is not None
            self._core.state.named_secrets[name] = payload

        self._run(update())

    @property
    def unimplemented_calls(self) -> list[str]:
        """Names of RPCs that were called but are not implemented, in call order (should stay empty)."""
        return list(self._diagnostics().unimplemented_calls)

    @property
    def server_errors(self) -> list[str]:
        """Unexpected exceptions raised inside RPC handlers (bugs in the emulator; should stay empty)."""
        return list(self._diagnostics().server_errors)

    def rpc_counts(self) -> dict[str, int]:
        """How often each RPC was called."""
        return dict(self._diagnostics().rpc_counts)

    def containers(self, *, include_exited: bool = False) -> list[ContainerInfo]:
        async def snapshot() -> list[ContainerInfo]:
            assert self._core is not None
            return [
                ContainerInfo(c.task_id, c.pid, c.app_id, c.function_id, c.runnable.name, c.state.value, c.exit_code)
                for c in self._core.containers.containers.values()
                if include_exited or c.exit_code is None
            ]

        return self._run(snapshot())

    def container_pids(self) -> list[int]:
        """Process ids of the containers currently running."""
        return [info.pid for info in self.containers() if info.pid is not None]

    def app_logs(self, app_name_or_id: str) -> str:
        """Everything the containers of an app printed (stdout and stderr), as far as retained."""

        async def text() -> str:
            assert self._core is not None
            state = self._core.state
            app_ids = (
                [app_name_or_id]
                if app_name_or_id in state.apps
                else [app.app_id for app in state.apps.values() if app_name_or_id in (app.name, app.description)]
            )
            return "".join(self._core.logs.text(app_id) for app_id in app_ids)

        return self._run(text())

    def deployed_function(self, app_name: str, tag: str, environment: str = "") -> api_pb2.Function:
        """The definition ``modal deploy`` sent for a function (``"Cls.*"`` for a class), e.g. to assert on
        ``timeout_secs``, ``retry_policy``, ``secret_ids`` or ``image_id``. Raises ``KeyError`` if not deployed."""

        async def lookup() -> api_pb2.Function:
            assert self._core is not None
            app = self._core.state.deployed_app(app_name, environment)
            if app is None or tag not in app.function_ids:
                raise KeyError(f"{app_name}/{tag}")
            definition = api_pb2.Function()
            definition.CopyFrom(self._core.state.functions[app.function_ids[tag]].definition)
            return definition

        return self._run(lookup())

    def image_commands(self, image_id: str) -> list[str]:
        """The recorded Dockerfile commands of an image, base layers first (nothing is built)."""

        async def commands() -> list[str]:
            assert self._core is not None
            images = self._core.state.images

            def walk(current: str) -> list[str]:
                image = images.get(current)
                if image is None:
                    return []
                out = [line for base in image.base_images for line in walk(base.image_id)]
                return out + list(image.dockerfile_commands)

            return walk(image_id)

        return self._run(commands())

    def _diagnostics(self) -> Any:
        if self._core is None:
            raise EmulatorError("emulator was never started")
        return self._core.diagnostics
