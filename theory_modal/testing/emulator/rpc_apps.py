"""RPCs about apps and environments: create/publish/stop, layouts, heartbeats, logs, task listing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from .core import CallContext, EmulatorCore
from .state import environment_name

IMAGE_BUILDER_VERSION = "2025.06"


class AppRPCs:
    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.state = core.state

    def _app_url(self, app_id: str) -> str:
        return f"{self.core.url}/apps/{app_id}"

    async def ClientHello(self, req: object, ctx: CallContext) -> api_pb2.ClientHelloResponse:
        return api_pb2.ClientHelloResponse(image_builder_version=IMAGE_BUILDER_VERSION)

    async def EnvironmentGetOrCreate(
        self, req: api_pb2.EnvironmentGetOrCreateRequest, ctx: CallContext
    ) -> api_pb2.EnvironmentGetOrCreateResponse:
        name = environment_name(req.deployment_name)
        settings = api_pb2.EnvironmentSettings(image_builder_version=IMAGE_BUILDER_VERSION, webhook_suffix="emulator")
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=f"en-{name}", metadata=api_pb2.EnvironmentMetadata(name=name, settings=settings)
        )

    async def AppCreate(self, req: api_pb2.AppCreateRequest, ctx: CallContext) -> api_pb2.AppCreateResponse:
        app = self.state.create_app(req.description, req.environment_name, req.app_state)
        return api_pb2.AppCreateResponse(
            app_id=app.app_id, app_page_url=self._app_url(app.app_id), app_logs_url=self._app_url(app.app_id)
        )

    async def AppGetByDeploymentName(
        self, req: api_pb2.AppGetByDeploymentNameRequest, ctx: CallContext
    ) -> api_pb2.AppGetByDeploymentNameResponse:
        app = self.state.deployed_app(req.name, req.environment_name)
        return api_pb2.AppGetByDeploymentNameResponse(
            app_id=app.app_id if app else "", environment_name=environment_name(req.environment_name)
        )

    async def AppGetOrCreate(
        self, req: api_pb2.AppGetOrCreateRequest, ctx: CallContext
    ) -> api_pb2.AppGetOrCreateResponse:
        app = self.state.deployed_app(req.app_name, req.environment_name)
        if app is None:
            if req.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                self.state.require_deployed_app(req.app_name, req.environment_name)  # raises NOT_FOUND
            app = self.state.create_app(req.app_name, req.environment_name, api_pb2.APP_STATE_DEPLOYED)
            self.state.register_deployment(app, req.app_name)
        return api_pb2.AppGetOrCreateResponse(app_id=app.app_id)

    async def AppGetLayout(self, req: api_pb2.AppGetLayoutRequest, ctx: CallContext) -> api_pb2.AppGetLayoutResponse:
        return api_pb2.AppGetLayoutResponse(app_layout=self.state.layout(req.app_id))

    async def AppPublish(self, req: api_pb2.AppPublishRequest, ctx: CallContext) -> api_pb2.AppPublishResponse:
        app = self.state.app(req.app_id)
        app.function_ids = dict(req.function_ids)
        app.class_ids = dict(req.class_ids)
        app.state = req.app_state
        if req.app_state == api_pb2.APP_STATE_DEPLOYED:
            self.state.register_deployment(app, req.name or app.name or app.description)
        # Containers started before this publish run the previous definitions: replace them (rolling).
        self.core.retire_app_containers(app, "replaced by a new deployment")
        return api_pb2.AppPublishResponse(url=self._app_url(app.app_id), deployed_at=app.deployed_at)

    async def AppHeartbeat(self, req: api_pb2.AppHeartbeatRequest, ctx: CallContext) -> None:
        self.state.app(req.app_id).last_heartbeat = time.monotonic()

    async def AppClientDisconnect(self, req: api_pb2.AppClientDisconnectRequest, ctx: CallContext) -> None:
        app = self.state.app(req.app_id)
        if app.state in (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING):
            reason = api_pb2.AppDisconnectReason.Name(req.reason) if req.reason else "client disconnected"
            self.core.spawn_background(self.core.stop_app(app, reason))

    async def AppStop(self, req: api_pb2.AppStopRequest, ctx: CallContext) -> None:
        await self.core.stop_app(self.state.app(req.app_id), "stopped by request")

    async def AppList(self, req: api_pb2.AppListRequest, ctx: CallContext) -> api_pb2.AppListResponse:
        environment = environment_name(req.environment_name)
        items = [
            api_pb2.AppListResponse.AppListItem(
                app_id=app.app_id,
                description=app.description,
                name=app.name,
                state=app.state,  # type: ignore[arg-type]
                created_at=app.created_at,
                stopped_at=app.stopped_at,
                n_running_tasks=len(self.core.containers.running(app.app_id)),
            )
            for app in self.state.apps.values()
            if app.environment == environment
        ]
        return api_pb2.AppListResponse(apps=items)

    async def AppLookup(self, req: api_pb2.AppLookupRequest, ctx: CallContext) -> api_pb2.AppLookupResponse:
        return api_pb2.AppLookupResponse(
            app_id=self.state.require_deployed_app(req.app_name, req.environment_name).app_id
        )

    async def AppGetLogs(
        self, req: api_pb2.AppGetLogsRequest, ctx: CallContext
    ) -> AsyncIterator[api_pb2.TaskLogsBatch]:
        self.state.app(req.app_id)
        async for batch in self.core.logs.stream(req):
            yield batch

    async def AppFetchLogs(self, req: api_pb2.AppFetchLogsRequest, ctx: CallContext) -> api_pb2.AppFetchLogsResponse:
        self.state.app(req.app_id)
        return self.core.logs.fetch(req)

    async def TaskList(self, req: api_pb2.TaskListRequest, ctx: CallContext) -> api_pb2.TaskListResponse:
        tasks = [
            api_pb2.TaskStats(
                task_id=c.task_id,
                app_id=c.app_id,
                app_description=self.state.app(c.app_id).description,
                started_at=c.ready_at or 0.0,
                enqueued_at=c.started_at,
            )
            for c in self.core.containers.running(req.app_id or None)
        ]
        return api_pb2.TaskListResponse(tasks=tasks)

    async def ContainerStop(self, req: api_pb2.ContainerStopRequest, ctx: CallContext) -> api_pb2.ContainerStopResponse:
        """Used by the CLI (stop a task by id) and by a container stopping itself (``stop_fetching_inputs``)."""
        container = self.core.containers.get(req.task_id or (ctx.container.task_id if ctx.container else ""))
        if container is None:
            raise GRPCError(Status.NOT_FOUND, f"Task {req.task_id!r} not found")
        if ctx.container is not None and req.graceful:
            self.core.containers.retire(container, "stopped itself", self.core.config.retire_grace)
        else:
            self.core.spawn_background(
                self.core.containers.terminate(container, self.core.config.container_stop_grace, "stopped by request")
            )
        return api_pb2.ContainerStopResponse()
