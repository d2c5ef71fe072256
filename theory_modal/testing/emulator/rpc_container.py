"""Container-side RPCs, as called by ``modal._container_entrypoint`` inside each container process."""

from __future__ import annotations

import logging

from modal_proto import api_pb2

from .containers import Container
from .core import CallContext, EmulatorCore

logger = logging.getLogger(__name__)


def _container(ctx: CallContext) -> Container:
    assert ctx.container is not None, "the dispatcher only routes container RPCs from authenticated containers"
    return ctx.container


class ContainerRPCs:
    #: RPCs that only a container may call (the dispatcher rejects them from ordinary clients).
    CONTAINER_ONLY = frozenset(
        {
            "ContainerHello",
            "ContainerHeartbeat",
            "FunctionGetInputs",
            "FunctionPutOutputs",
            "FunctionCallPutDataOut",
            "FunctionGetDynamicConcurrency",
            "TaskResult",
        }
    )

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.scheduler = core.scheduler

    async def ContainerHello(self, req: object, ctx: CallContext) -> None:
        return None

    async def ContainerHeartbeat(
        self, req: api_pb2.ContainerHeartbeatRequest, ctx: CallContext
    ) -> api_pb2.ContainerHeartbeatResponse:
        container = _container(ctx)
        response = api_pb2.ContainerHeartbeatResponse()
        if container.cancel_requests:
            response.cancel_input_event.input_ids.extend(sorted(container.cancel_requests))
            container.cancel_requests.clear()
        return response

    async def FunctionGetInputs(
        self, req: api_pb2.FunctionGetInputsRequest, ctx: CallContext
    ) -> api_pb2.FunctionGetInputsResponse:
        # Inputs are routed by the caller's task (a bound Cls instance has its own queue), not req.function_id.
        items = await self.scheduler.next_inputs(_container(ctx), req.batch_max_size, int(req.batch_linger_ms))
        return api_pb2.FunctionGetInputsResponse(inputs=items)

    async def FunctionPutOutputs(self, req: api_pb2.FunctionPutOutputsRequest, ctx: CallContext) -> None:
        for item in req.outputs:
            self.scheduler.put_output(_container(ctx), item)

    async def FunctionCallPutDataOut(self, req: api_pb2.FunctionCallPutDataRequest, ctx: CallContext) -> None:
        self.scheduler.put_data_out(req)

    async def FunctionGetDynamicConcurrency(
        self, req: api_pb2.FunctionGetDynamicConcurrencyRequest, ctx: CallContext
    ) -> api_pb2.FunctionGetDynamicConcurrencyResponse:
        # No autoscaler to consult: let the container use its full `@modal.concurrent(max_inputs=...)`.
        return api_pb2.FunctionGetDynamicConcurrencyResponse(concurrency=max(req.max_concurrency, 1))

    async def TaskResult(self, req: api_pb2.TaskResultRequest, ctx: CallContext) -> None:
        """Sent when importing the user's code or running ``@modal.enter`` failed; the container then exits."""
        container = _container(ctx)
        container.task_result = req.result
        logger.info("container %s reported startup failure: %s", container.task_id, req.result.exception)
