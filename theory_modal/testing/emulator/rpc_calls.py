"""Caller-side invocation RPCs: ``.remote``, ``.remote_gen``, ``.spawn``, ``.map``/``.starmap``, ``FunctionCall``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from .core import CallContext, EmulatorCore
from .ids import decode_token

MAX_INPUTS_OUTSTANDING = 1000


class CallRPCs:
    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.scheduler = core.scheduler

    def _put_items(
        self, call_id: str, items: list[api_pb2.FunctionPutInputsItem]
    ) -> list[api_pb2.FunctionPutInputsResponseItem]:
        call = self.scheduler.call(call_id)
        out = []
        for item in items:
            record = self.scheduler.add_input(call, item.idx, item.input)
            out.append(
                api_pb2.FunctionPutInputsResponseItem(
                    idx=item.idx, input_id=record.input_id, input_jwt=self.scheduler.input_token(record)
                )
            )
        return out

    async def FunctionMap(self, req: api_pb2.FunctionMapRequest, ctx: CallContext) -> api_pb2.FunctionMapResponse:
        call = self.scheduler.create_call(req.function_id, req.function_call_invocation_type)
        definition = self.core.state.runnable(req.function_id).definition
        response = api_pb2.FunctionMapResponse(
            function_call_id=call.call_id,
            function_call_jwt=self.scheduler.call_token(call),
            max_inputs_outstanding=MAX_INPUTS_OUTSTANDING,
            # Synchronous calls retry client-side (FunctionRetryInputs); the scheduler retries the others.
            sync_client_retries_enabled=True,
        )
        if definition.retry_policy.retries:
            response.retry_policy.CopyFrom(definition.retry_policy)
        response.pipelined_inputs.extend(self._put_items(call.call_id, list(req.pipelined_inputs)))
        return response

    async def FunctionPutInputs(
        self, req: api_pb2.FunctionPutInputsRequest, ctx: CallContext
    ) -> api_pb2.FunctionPutInputsResponse:
        return api_pb2.FunctionPutInputsResponse(inputs=self._put_items(req.function_call_id, list(req.inputs)))

    async def FunctionFinishInputs(self, req: api_pb2.FunctionFinishInputsRequest, ctx: CallContext) -> None:
        self.scheduler.call(req.function_call_id)  # nothing to do beyond validating the id

    async def FunctionGetOutputs(
        self, req: api_pb2.FunctionGetOutputsRequest, ctx: CallContext
    ) -> api_pb2.FunctionGetOutputsResponse:
        return await self.scheduler.get_outputs(req)

    async def FunctionRetryInputs(
        self, req: api_pb2.FunctionRetryInputsRequest, ctx: CallContext
    ) -> api_pb2.FunctionRetryInputsResponse:
        try:
            self.scheduler.call(decode_token(req.function_call_jwt)["function_call_id"])
        except (ValueError, KeyError) as exc:
            raise GRPCError(Status.NOT_FOUND, "unknown function call") from exc
        return api_pb2.FunctionRetryInputsResponse(input_jwts=self.scheduler.retry_inputs(req))

    async def FunctionCallGetDataOut(
        self, req: api_pb2.FunctionCallGetDataRequest, ctx: CallContext
    ) -> AsyncIterator[api_pb2.DataChunk]:
        if req.HasField("attempt_token"):
            record = self.scheduler.input_for_attempt(req.attempt_token)
            if record is None:
                raise GRPCError(Status.NOT_FOUND, "unknown attempt token")
            call = self.scheduler.call(record.call_id)
        else:
            call = self.scheduler.call(req.function_call_id)
        async for chunk in self.scheduler.stream_data_out(call, int(req.last_index)):
            yield chunk

    async def FunctionCallCancel(self, req: api_pb2.FunctionCallCancelRequest, ctx: CallContext) -> None:
        self.scheduler.cancel_call(self.scheduler.call(req.function_call_id), req.terminate_containers)

    async def FunctionCallFromId(
        self, req: api_pb2.FunctionCallFromIdRequest, ctx: CallContext
    ) -> api_pb2.FunctionCallFromIdResponse:
        call = self.scheduler.call(req.function_call_id)
        return api_pb2.FunctionCallFromIdResponse(
            function_call_id=call.call_id,
            num_inputs=len(call.input_ids),
            metadata=api_pb2.FunctionCallHandleMetadata(app_id=call.app_id, function_id=call.function_id),
        )
