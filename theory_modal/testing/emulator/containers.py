"""Container processes: real ``python -m modal._container_entrypoint`` subprocesses, one per started container.

Each container gets
* its own directory under the state dir: the uploaded mounts materialised below ``fs/`` (``/root/app.py`` becomes
  ``fs/root/app.py``, which is also the working directory and on ``PYTHONPATH``), a private ``HOME`` and the
  ``ContainerArguments`` file the entrypoint reads;
* a stripped environment: PATH, HOME, LANG, PYTHONUNBUFFERED, PYTHONPATH, the image's ``ENV`` lines, the secrets
  and the ``MODAL_*`` container variables. Nothing else from the host leaks in (no API keys);
* its own session/process group, so stopping it also stops whatever it spawned;
* a parent-death signal (Linux ``PR_SET_PDEATHSIG``), armed by a tiny launcher that then ``exec``s the
  entrypoint, so containers die with the emulator even if it is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import enum
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modal_proto import api_pb2

from .ids import IdFactory
from .images import image_env
from .logs import LogBook
from .state import Runnable, WorkspaceState

logger = logging.getLogger(__name__)
output_logger = logging.getLogger(__name__ + ".output")

TASK_ID_HEADER = "x-modal-emulator-task-id"
TASK_SECRET_HEADER = "x-modal-emulator-task-secret"
DEFAULT_STARTUP_TIMEOUT_SECS = 300
# Container start here includes interpreter start-up on a possibly loaded test machine, so a function's startup
# timeout (which defaults to its `timeout`, e.g. 2s) is never applied below this floor.
MIN_STARTUP_TIMEOUT_SECS = 20

# Runs under `python -I -S -c`: arm SIGKILL-on-parent-death, make sure the parent did not already die, then exec.
_LAUNCHER = """
import os, sys
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""


class ContainerState(enum.Enum):
    STARTING = "starting"  # process launched, user code importing / @enter hooks running
    READY = "ready"  # asked for inputs at least once
    STOPPING = "stopping"  # told to stop (kill switch / SIGTERM), waiting for the process to exit
    EXITED = "exited"


@dataclass(eq=False)
class Container:
    task_id: str
    secret: str
    runnable: Runnable
    max_inputs: int
    state: ContainerState = ContainerState.STARTING
    process: asyncio.subprocess.Process | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    exit_code: int | None = None
    task_result: api_pb2.GenericResult | None = None  # from TaskResult (startup/@enter failure) or startup timeout
    stop_reason: str = ""
    inflight: set[str] = field(default_factory=set)  # input ids being processed
    cancel_requests: set[str] = field(default_factory=set)  # input ids to cancel at the next heartbeat
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def function_id(self) -> str:
        return self.runnable.function_id

    @property
    def app_id(self) -> str:
        return self.runnable.app_id

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.state in (ContainerState.STARTING, ContainerState.READY)


def _signal_group(container: Container, sig: int) -> None:
    if container.process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(container.process.pid, sig)  # start_new_session=True: pgid == pid


class ContainerManager:
    """Starts, tracks and stops container processes. Calls ``on_exit`` once per container, after it exited."""

    def __init__(
        self,
        *,
        state: WorkspaceState,
        logs: LogBook,
        ids: IdFactory,
        root: Path,
        server_url: Callable[[], str],
        on_exit: Callable[[Container], None],
        on_stopping: Callable[[Container], None],
        echo_output: bool = False,
        heartbeat_interval: float = 1.0,
    ) -> None:
        self._state = state
        self._heartbeat_interval = heartbeat_interval
        self._logs = logs
        self._ids = ids
        self._root = root
        self._server_url = server_url
        self._on_exit = on_exit
        self._on_stopping = on_stopping
        self._echo_output = echo_output
        self.containers: dict[str, Container] = {}
        self.closing = False  # set by shutdown(): no new containers
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ queries

    def get(self, task_id: str) -> Container | None:
        return self.containers.get(task_id)

    def authenticate(self, task_id: str, secret: str) -> Container | None:
        container = self.containers.get(task_id)
        if container is None or not secrets.compare_digest(container.secret, secret):
            return None
        return container

    def live(self, function_id: str) -> list[Container]:
        return [c for c in self.containers.values() if c.function_id == function_id and c.alive]

    def running(self, app_id: str | None = None) -> list[Container]:
        return [
            c
            for c in self.containers.values()
            if c.state is not ContainerState.EXITED and (app_id is None or c.app_id == app_id)
        ]

    # ------------------------------------------------------------------ lifecycle

    def spawn(self, runnable: Runnable) -> Container:
        """Register a container for ``runnable`` and start its process in the background."""
        container = Container(
            task_id=self._ids.new("ta"),
            secret=secrets.token_hex(16),
            runnable=runnable,
            max_inputs=max(runnable.definition.max_concurrent_inputs, 1),
        )
        self.containers[container.task_id] = container
        logger.info("starting container %s for %s (%s)", container.task_id, runnable.name, runnable.function_id)
        self._start_task(self._run(container))
        definition = runnable.definition
        startup_timeout = max(
            definition.startup_timeout_secs or definition.timeout_secs or DEFAULT_STARTUP_TIMEOUT_SECS,
            MIN_STARTUP_TIMEOUT_SECS,
        )
        asyncio.get_running_loop().call_later(startup_timeout, self._check_started, container, startup_timeout)
        return container

    def mark_ready(self, container: Container) -> None:
        if container.state is ContainerState.STARTING:
            container.state = ContainerState.READY
            container.ready_at = time.time()

    def retire(self, container: Container, reason: str, grace: float) -> None:
        """Ask a container to stop taking inputs (kill switch) and finish; terminate it after ``grace`` seconds."""
        if container.alive:
            self._mark_stopping(container, reason)
            self._start_task(self._terminate_after(container, grace))

    def kill(self, container: Container, reason: str) -> None:
        """Stop a container at once (SIGKILL to its process group)."""
        self._mark_stopping(container, reason)
        _signal_group(container, signal.SIGKILL)

    async def terminate(self, container: Container, grace: float, reason: str) -> None:
        """SIGTERM the container's process group, SIGKILL it after ``grace`` seconds, wait until it is gone."""
        if container.state is ContainerState.EXITED:
            return
        self._mark_stopping(container, reason)
        _signal_group(container, signal.SIGTERM)
        try:
            await asyncio.wait_for(container.exited.wait(), grace)
        except TimeoutError:
            _signal_group(container, signal.SIGKILL)
            await container.exited.wait()

    async def shutdown(self, grace: float) -> None:
        """Terminate every container and wait for all of them (used by ``ModalEmulator.stop``)."""
        self.closing = True
        await asyncio.gather(*(self.terminate(c, grace, "emulator stopping") for c in self.running()))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _mark_stopping(self, container: Container, reason: str) -> None:
        if container.alive:
            container.state = ContainerState.STOPPING
            container.stop_reason = reason
            self._on_stopping(container)

    def _start_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _terminate_after(self, container: Container, grace: float) -> None:
        try:
            await asyncio.wait_for(container.exited.wait(), grace)
        except TimeoutError:
            await self.terminate(container, 3.0, container.stop_reason)

    def _check_started(self, container: Container, timeout: float) -> None:
        if container.state is ContainerState.STARTING:
            container.task_result = api_pb2.GenericResult(
                status=api_pb2.GenericResult.GENERIC_STATUS_TIMEOUT,
                exception=f"Container for {container.runnable.name} did not start within {timeout}s",
            )
            self.kill(container, "startup timeout")

    async def _run(self, container: Container) -> None:
        try:
            container.process = await self._launch(container)
        except Exception as exc:
            logger.exception("could not start container %s", container.task_id)
            container.task_result = api_pb2.GenericResult(
                status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE,
                exception=f"The emulator could not start a container: {exc!r}",
            )
            container.exit_code = -1
        else:
            if container.state is ContainerState.STOPPING:  # stopped while launching
                _signal_group(container, signal.SIGTERM)
            process = container.process
            pumps = [
                asyncio.ensure_future(self._pump(container, process.stdout, api_pb2.FILE_DESCRIPTOR_STDOUT)),
                asyncio.ensure_future(self._pump(container, process.stderr, api_pb2.FILE_DESCRIPTOR_STDERR)),
            ]
            container.exit_code = await process.wait()
            # Output written just before exit is still in the pipes; grandchildren may hold them open, so bound it.
            await asyncio.wait(pumps, timeout=2.0)
            for pump in pumps:
                pump.cancel()
            _signal_group(container, signal.SIGKILL)  # leftovers in the process group, if any
        container.state = ContainerState.EXITED
        logger.info(
            "container %s for %s exited with code %s%s",
            container.task_id,
            container.runnable.name,
            container.exit_code,
            f" ({container.stop_reason})" if container.stop_reason else "",
        )
        try:
            self._on_exit(container)
        finally:
            container.exited.set()

    async def _launch(self, container: Container) -> asyncio.subprocess.Process:
        runnable = container.runnable
        definition = runnable.definition
        app = self._state.app(runnable.app_id)
        directory = self._root / container.task_id
        fs_root = directory / "fs"
        home = directory / "home"
        workdir = fs_root / "root"
        for path in (home, workdir):
            path.mkdir(parents=True, exist_ok=True)
        self._materialise_mounts(definition, fs_root)

        arguments = api_pb2.ContainerArguments(
            task_id=container.task_id,
            function_id=runnable.function_id,
            app_id=runnable.app_id,
            function_def=definition,
            app_layout=self._state.layout(runnable.app_id),
            serialized_params=runnable.serialized_params,
            environment_name=app.environment,
        )
        arguments_path = directory / "container_arguments.bin"
        arguments_path.write_bytes(arguments.SerializeToString())

        env = image_env(
            definition.image_id,
            self._state.images,
            {
                "PATH": os.environ.get("PATH", os.defpath),
                "HOME": str(home),
                "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1",  # so print() reaches `modal run` as it happens
            },
        )
        for secret_id in definition.secret_ids:
            env.update(self._state.secret_env(secret_id))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(workdir), env.get("PYTHONPATH", "")) if p)
        env.update(
            {
                "MODAL_SERVER_URL": self._server_url(),
                "MODAL_IS_REMOTE": "1",
                "MODAL_TASK_ID": container.task_id,
                "MODAL_IMAGE_ID": definition.image_id,  # makes `with image.imports():` re-raise like in Modal
                "MODAL_ENVIRONMENT": app.environment,
                "MODAL_CONTAINER_ARGUMENTS_PATH": str(arguments_path),
                "MODAL_CONFIG_PATH": str(home / ".modal.toml"),  # never created
                "MODAL_OVERRIDE_HEADERS": (
                    f"{TASK_ID_HEADER}:{container.task_id},{TASK_SECRET_HEADER}:{container.secret}"
                ),
                "THEORY_MODAL_EMULATOR_FS_ROOT": str(fs_root),
                # how often the container heartbeats, and so how soon it learns an input was cancelled
                "MODAL_HEARTBEAT_INTERVAL": str(self._heartbeat_interval),
            }
        )
        argv = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid())]
        argv += [sys.executable, "-m", "modal._container_entrypoint"]
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(workdir),
            start_new_session=True,
        )

    def _materialise_mounts(self, definition: api_pb2.Function, fs_root: Path) -> None:
        root = fs_root.resolve()
        for mount_id in definition.mount_ids:
            for filename, content, mode in self._state.mount_files(mount_id):
                destination = (root / filename.lstrip("/")).resolve()
                if root not in destination.parents:
                    logger.warning("ignoring mount file outside the container root: %r", filename)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(content)
                if mode is not None:
                    destination.chmod(mode & 0o7777)

    async def _pump(self, container: Container, stream: asyncio.StreamReader | None, fd: int) -> None:
        if stream is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        prefix = f"[{container.runnable.name} {container.task_id}] "
        level = logging.INFO if self._echo_output else logging.DEBUG
        partial = ""  # unterminated last line, held back from our own log (clients get the raw chunks)
        while chunk := await stream.read(65536):
            text = decoder.decode(chunk)
            if not text:
                continue
            self._logs.append(container.app_id, container.task_id, container.function_id, fd, text)
            *lines, partial = (partial + text).split("\n")
            for line in lines:
                output_logger.log(level, "%s%s", prefix, line)
        if partial:
            output_logger.log(level, "%s%s", prefix, partial)
