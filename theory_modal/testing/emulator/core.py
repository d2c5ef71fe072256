"""The emulator's composition root: configuration, the shared services, and app-level operations.

Everything in here lives on the emulator's event loop. ``ModalEmulator`` (``emulator.py``) owns the loop thread
and the public, thread-safe API; the RPC handler groups (``rpc_*.py``) receive an :class:`EmulatorCore`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modal_proto import api_pb2

from .blobs import BlobStore
from .containers import Container, ContainerManager
from .ids import IdFactory
from .logs import LogBook
from .scheduler import TERMINATED, Scheduler
from .state import AppRecord, WorkspaceState

logger = logging.getLogger(__name__)

JANITOR_INTERVAL_SECS = 5.0


@dataclass(frozen=True)
class EmulatorConfig:
    """Knobs of the emulator. The defaults suit test suites on a small machine."""

    host: str = "127.0.0.1"
    port: int = 0
    token_id: str = "ak-emulator"
    token_secret: str = "as-emulator"
    max_containers_per_function: int = 1  # scale-out cap per (bound) function; 1 keeps CPU use predictable
    container_stop_grace: float = 3.0  # SIGTERM -> SIGKILL delay when stopping containers
    retire_grace: float = 30.0  # how long containers of a replaced deployment may finish their inputs
    ephemeral_app_timeout: float = 90.0  # `modal run` apps without heartbeat for this long are stopped
    echo_container_output: bool = False  # log container output at INFO (else DEBUG)
    # Containers deliver input cancellations at their heartbeat; Modal's default is every 15 s. Faster here, so
    # tests see a cancelled input stop within about a second.
    container_heartbeat_interval: float = 1.0


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the RPC name, the client type, and the container (for container-side calls)."""

    rpc: str
    client_type: int
    container: Container | None = None


@dataclass
class Diagnostics:
    """What tests assert on: gaps in the emulation and bugs in it should be visible at once."""

    unimplemented_calls: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    rpc_counts: collections.Counter[str] = field(default_factory=collections.Counter)


class EmulatorCore:
    def __init__(self, config: EmulatorConfig, state_dir: Path, secrets: dict[str, dict[str, str]]) -> None:
        self.config = config
        self.state_dir = state_dir
        self.url = ""  # set once the gRPC server is bound
        self.ids = IdFactory()
        self.state = WorkspaceState(self.ids, secrets)
        self.logs = LogBook()
        self.blobs = BlobStore(self.ids, config.host)
        self.diagnostics = Diagnostics()
        self.scheduler = Scheduler(
            state=self.state, ids=self.ids, max_containers_per_function=config.max_containers_per_function
        )
        self.containers = ContainerManager(
            state=self.state,
            logs=self.logs,
            ids=self.ids,
            root=state_dir / "containers",
            server_url=lambda: self.url,
            on_exit=self.scheduler.on_container_exit,
            on_stopping=self.scheduler.on_container_stopping,
            echo_output=config.echo_container_output,
            heartbeat_interval=config.container_heartbeat_interval,
        )
        self.scheduler.containers = self.containers
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.blobs.start()
        self.spawn_background(self._janitor())

    async def stop(self) -> None:
        await self.containers.shutdown(self.config.container_stop_grace)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.blobs.stop()

    def spawn_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ app operations

    def retire_app_containers(self, app: AppRecord, reason: str) -> None:
        """A new version of the app was published: old containers finish their inputs, then go away."""
        retiring = self.containers.running(app.app_id)
        for container in retiring:
            self.containers.retire(container, reason, self.config.retire_grace)
        for function_id in {c.function_id for c in retiring}:
            self.scheduler.ensure_capacity(function_id)

    async def stop_app(self, app: AppRecord, reason: str) -> None:
        """Stop an app: forget its deployment, fail its unfinished inputs, stop its containers, end its logs."""
        if app.is_stopped:
            return
        logger.info("stopping app %s (%s): %s", app.app_id, app.name or app.description, reason)
        app.state = api_pb2.APP_STATE_STOPPED
        app.stopped_at = time.time()
        self.state.forget_deployment(app)
        self.scheduler.fail_app_inputs(app.app_id, TERMINATED, f"App {app.name or app.description} stopped: {reason}")
        await asyncio.gather(
            *(
                self.containers.terminate(c, self.config.container_stop_grace, f"app stopped: {reason}")
                for c in self.containers.running(app.app_id)
            )
        )
        self.logs.mark_done(app.app_id)

    async def _janitor(self) -> None:
        """Stop ephemeral apps whose client went away without saying goodbye (no heartbeat)."""
        while True:
            await asyncio.sleep(JANITOR_INTERVAL_SECS)
            now = time.monotonic()
            for app in list(self.state.apps.values()):
                if (
                    app.state == api_pb2.APP_STATE_EPHEMERAL
                    and now - app.last_heartbeat > self.config.ephemeral_app_timeout
                ):
                    await self.stop_app(app, "client heartbeat lost")
