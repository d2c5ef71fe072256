"""Function calls, inputs and outputs: queueing, dispatch to containers, timeouts, retries, cancellation.

Vocabulary (as in Modal's API): a *function call* (``fc-``) has one input (``.remote``/``.spawn``) or many
(``.map``); each *input* (``in-``) is run by *attempts*, each with a fresh attempt token and a ``retry_count``.

Retries follow the real split of responsibilities:
* synchronous calls (``.remote``, ``.map``): the client drives retries. We return ``sync_client_retries_enabled``,
  publish each failed attempt, and the client answers with ``FunctionRetryInputs``;
* everything else (``.spawn``): the emulator re-queues failed attempts itself, with the policy's back-off.

Each input handed to a container is timed by ``timeout_secs``; on expiry its attempt fails with a TIMEOUT status
(``FunctionTimeoutError`` on the caller) and, like Modal's worker, the container is killed.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from .containers import Container, ContainerManager, ContainerState
from .ids import IdFactory, Signal, decode_token, encode_token
from .state import WorkspaceState

logger = logging.getLogger(__name__)

GET_INPUTS_POLL_SECS = 5.0
OUTPUTS_POLL_CAP_SECS = 55.0
DATA_OUT_POLL_CAP_SECS = 55.0
MAX_OUTPUTS_PER_RESPONSE = 100
MIN_RETRY_DELAY_MS = 1000  # modal.retries.MIN_INPUT_RETRY_DELAY_MS

SUCCESS = api_pb2.GenericResult.GENERIC_STATUS_SUCCESS
FAILURE = api_pb2.GenericResult.GENERIC_STATUS_FAILURE
TERMINATED = api_pb2.GenericResult.GENERIC_STATUS_TERMINATED
TIMEOUT = api_pb2.GenericResult.GENERIC_STATUS_TIMEOUT
RETRYABLE = {FAILURE, TIMEOUT, api_pb2.GenericResult.GENERIC_STATUS_INTERNAL_FAILURE}


class InputStatus(enum.Enum):
    PENDING = "pending"  # queued for a container
    RUNNING = "running"  # handed to a container
    WAITING_RETRY = "waiting_retry"  # failed; the emulator will re-queue it after the back-off
    DONE = "done"  # an output was published


@dataclass(eq=False)
class InputRecord:
    input_id: str
    call_id: str
    idx: int
    function_id: str
    input: api_pb2.FunctionInput
    invocation_type: int
    retry_policy: api_pb2.FunctionRetryPolicy | None
    client_retries: bool
    retry_count: int = 0
    attempt_token: str = ""
    status: InputStatus = InputStatus.PENDING
    task_id: str | None = None
    timer: asyncio.TimerHandle | None = None
    output: api_pb2.FunctionGetOutputsItem | None = None


@dataclass(eq=False)
class FunctionCallRecord:
    call_id: str
    function_id: str
    app_id: str
    invocation_type: int
    input_ids: list[str] = field(default_factory=list)
    output_log: list[api_pb2.FunctionGetOutputsItem] = field(default_factory=list)  # read by `.map` (entry ids)
    visible: dict[int, api_pb2.FunctionGetOutputsItem] = field(default_factory=dict)  # read by idx (`.remote`)
    data_out: list[api_pb2.DataChunk] = field(default_factory=list)  # generator items
    changed: Signal = field(default_factory=Signal)


def retry_delay_secs(policy: api_pb2.FunctionRetryPolicy, attempt: int) -> float:
    """Same formula as ``modal.retries.RetryManager``: exponential back-off, at least one second."""
    delay_ms = policy.initial_delay_ms * (policy.backoff_coefficient ** (attempt - 1))
    if policy.max_delay_ms:
        delay_ms = min(delay_ms, policy.max_delay_ms)
    return max(delay_ms, MIN_RETRY_DELAY_MS) / 1000


def _entry_index(last_entry_id: str) -> int:
    try:
        return int((last_entry_id or "0").split("-")[0])
    except ValueError:
        return 0


class Scheduler:
    """Owns every function call and input, and decides which container runs what."""

    def __init__(self, *, state: WorkspaceState, ids: IdFactory, max_containers_per_function: int = 1) -> None:
        self._state = state
        self._ids = ids
        self._max_containers = max(1, max_containers_per_function)
        self.containers: ContainerManager  # set by the emulator core (the two refer to each other)
        self.calls: dict[str, FunctionCallRecord] = {}
        self.inputs: dict[str, InputRecord] = {}
        self._attempts: dict[str, str] = {}  # attempt token -> input id
        self._queues: dict[str, collections.deque[InputRecord]] = collections.defaultdict(collections.deque)
        self._queue_signals: dict[str, Signal] = collections.defaultdict(Signal)

    # ------------------------------------------------------------------ caller side

    def call(self, call_id: str) -> FunctionCallRecord:
        record = self.calls.get(call_id)
        if record is None:
            raise GRPCError(Status.NOT_FOUND, f"Function call {call_id!r} not found")
        return record

    def create_call(self, function_id: str, invocation_type: int) -> FunctionCallRecord:
        runnable = self._state.runnable(function_id)
        app = self._state.app(runnable.app_id)
        if app.is_stopped:
            raise GRPCError(Status.FAILED_PRECONDITION, f"App {app.app_id} ({app.description}) is stopped")
        record = FunctionCallRecord(self._ids.new("fc"), function_id, runnable.app_id, invocation_type)
        self.calls[record.call_id] = record
        return record

    def call_token(self, call: FunctionCallRecord) -> str:
        return encode_token({"function_call_id": call.call_id})

    def add_input(self, call: FunctionCallRecord, idx: int, function_input: api_pb2.FunctionInput) -> InputRecord:
        definition = self._state.runnable(call.function_id).definition
        policy = definition.retry_policy if definition.retry_policy.retries > 0 else None
        record = InputRecord(
            input_id=self._ids.new("in"),
            call_id=call.call_id,
            idx=idx,
            function_id=call.function_id,
            input=function_input,
            invocation_type=call.invocation_type,
            retry_policy=policy,
            client_retries=call.invocation_type == api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC,
        )
        self.inputs[record.input_id] = record
        call.input_ids.append(record.input_id)
        self._enqueue(record, retry_count=0)
        return record

    def input_token(self, record: InputRecord) -> str:
        return encode_token({"input_id": record.input_id, "idx": record.idx, "function_call_id": record.call_id})

    def retry_inputs(self, request: api_pb2.FunctionRetryInputsRequest) -> list[str]:
        """Client-driven retry (``FunctionRetryInputs``): re-queue the inputs as new attempts."""
        tokens = []
        for item in request.inputs:
            try:
                record = self.inputs[decode_token(item.input_jwt)["input_id"]]
            except (ValueError, KeyError) as exc:
                raise GRPCError(Status.NOT_FOUND, f"unknown input {item.input_jwt!r}") from exc
            call = self.calls[record.call_id]
            if call.visible.get(record.idx) is record.output:
                call.visible.pop(record.idx, None)
            if item.HasField("input"):
                record.input = item.input
            self._enqueue(record, retry_count=max(item.retry_count, record.retry_count + 1))
            tokens.append(self.input_token(record))
        return tokens

    async def get_outputs(self, request: api_pb2.FunctionGetOutputsRequest) -> api_pb2.FunctionGetOutputsResponse:
        """Long-poll for outputs: by index range (``.remote``, ``.get``) or after ``last_entry_id`` (``.map``)."""
        call = self.call(request.function_call_id)
        deadline = time.monotonic() + min(max(request.timeout, 0.0), OUTPUTS_POLL_CAP_SECS)
        by_index = request.HasField("start_idx")
        while True:
            if by_index:
                end = request.end_idx if request.HasField("end_idx") else request.start_idx
                outputs = [item for idx, item in sorted(call.visible.items()) if request.start_idx <= idx <= end]
                last_entry_id = request.last_entry_id
            else:
                start = _entry_index(request.last_entry_id)
                outputs = call.output_log[start : start + MAX_OUTPUTS_PER_RESPONSE]
                last_entry_id = f"{start + len(outputs)}-0"
            remaining = deadline - time.monotonic()
            if outputs or remaining <= 0:
                break
            await call.changed.wait(remaining)
        if request.clear_on_success:
            for item in outputs:
                if item.result.status == SUCCESS and call.visible.get(item.idx) is item:
                    del call.visible[item.idx]
        unfinished = sum(1 for input_id in call.input_ids if self.inputs[input_id].status is not InputStatus.DONE)
        return api_pb2.FunctionGetOutputsResponse(
            outputs=outputs,
            idxs=[item.idx for item in outputs],
            last_entry_id=last_entry_id,
            num_unfinished_inputs=unfinished,
        )

    async def stream_data_out(self, call: FunctionCallRecord, last_index: int) -> AsyncIterator[api_pb2.DataChunk]:
        """Generator items of a call, after ``last_index``; the client closes the stream once it has them all."""
        deadline = time.monotonic() + DATA_OUT_POLL_CAP_SECS
        while (remaining := deadline - time.monotonic()) > 0:
            new = [chunk for chunk in call.data_out if chunk.index > last_index]
            if not new:
                await call.changed.wait(remaining)
                continue
            for chunk in new:
                last_index = max(last_index, chunk.index)
                yield chunk

    def cancel_call(self, call: FunctionCallRecord, terminate_containers: bool) -> None:
        for input_id in call.input_ids:
            record = self.inputs[input_id]
            if record.status is InputStatus.DONE:
                continue
            container = self.containers.get(record.task_id) if record.task_id else None
            if record.status is InputStatus.RUNNING and container is not None:
                if terminate_containers:
                    self.containers.kill(container, "function call cancelled")
                else:
                    container.cancel_requests.add(record.input_id)
            self._publish(record, self._result_item(record, TERMINATED, "Function call was cancelled"))

    # ------------------------------------------------------------------ container side

    async def next_inputs(
        self, container: Container, batch_max_size: int = 0, batch_linger_ms: int = 0
    ) -> list[api_pb2.FunctionGetInputsItem]:
        """Hand queued inputs to ``container`` (long-poll): one, or up to ``batch_max_size`` for ``@modal.batched``
        functions, waiting up to ``batch_linger_ms`` for a batch to fill. A kill-switch item tells it to stop."""
        self.containers.mark_ready(container)
        signal = self._queue_signals[container.function_id]
        deadline = time.monotonic() + GET_INPUTS_POLL_SECS
        while True:
            if container.state is not ContainerState.READY:
                return [api_pb2.FunctionGetInputsItem(kill_switch=True)]
            if (first := self._pop_pending(container.function_id)) is not None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await signal.wait(remaining)
        batch = [first]
        linger_deadline = time.monotonic() + batch_linger_ms / 1000
        try:
            while len(batch) < batch_max_size and container.state is ContainerState.READY:
                if (record := self._pop_pending(container.function_id)) is not None:
                    batch.append(record)
                elif (remaining := linger_deadline - time.monotonic()) > 0:
                    await signal.wait(remaining)
                else:
                    break
        except BaseException:  # cancelled (the container went away): put the batch back, in order
            self._queues[container.function_id].extendleft(reversed(batch))
            raise
        if container.state is not ContainerState.READY:
            self._queues[container.function_id].extendleft(reversed(batch))
            signal.notify()
            return [api_pb2.FunctionGetInputsItem(kill_switch=True)]
        return [self._dispatch(record, container) for record in batch]

    def _pop_pending(self, function_id: str) -> InputRecord | None:
        queue = self._queues[function_id]
        while queue:
            record = queue.popleft()
            if record.status is InputStatus.PENDING:  # skip inputs cancelled while queued
                return record
        return None

    def put_output(self, container: Container, item: api_pb2.FunctionPutOutputsItem) -> None:
        record = self.inputs.get(item.input_id)
        if (
            record is None
            or record.status is not InputStatus.RUNNING
            or record.task_id != container.task_id
            or record.retry_count != item.retry_count
        ):
            logger.debug("ignoring stale output for %s from %s", item.input_id, container.task_id)
            return
        output = api_pb2.FunctionGetOutputsItem(
            result=item.result,
            idx=record.idx,
            input_id=record.input_id,
            data_format=item.data_format,
            task_id=container.task_id,
            input_started_at=item.input_started_at,
            output_created_at=item.output_created_at,
            retry_count=record.retry_count,
        )
        self._finish_attempt(record, output)

    def input_for_attempt(self, attempt_token: str) -> InputRecord | None:
        return self.inputs.get(self._attempts.get(attempt_token, ""))

    def put_data_out(self, request: api_pb2.FunctionCallPutDataRequest) -> None:
        if request.HasField("attempt_token"):
            record = self.input_for_attempt(request.attempt_token)
            if record is None or record.attempt_token != request.attempt_token:
                return  # a superseded attempt
            call = self.calls[record.call_id]
        else:
            call = self.call(request.function_call_id)
        call.data_out.extend(request.data_chunks)
        call.changed.notify()

    def on_container_stopping(self, container: Container) -> None:
        """Wake the container's pending ``FunctionGetInputs`` so it receives its kill switch promptly."""
        self._queue_signals[container.function_id].notify()

    def on_container_exit(self, container: Container) -> None:
        """Fail what the container was running; if it never became ready, fail what was waiting for it."""
        if container.ready_at is not None:
            message = (
                f"Container {container.task_id} running {container.runnable.name} exited with code "
                f"{container.exit_code} while processing this input"
            )
            if container.stop_reason:
                message += f" ({container.stop_reason})"
            for input_id in list(container.inflight):
                record = self.inputs[input_id]
                self._finish_attempt(record, self._result_item(record, FAILURE, message))
        elif not container.stop_reason or container.task_result is not None:
            self._fail_startup(container)
        container.inflight.clear()
        if self._queues[container.function_id]:
            self.ensure_capacity(container.function_id)

    def fail_app_inputs(self, app_id: str, status: int, message: str) -> None:
        """Publish ``status`` for every unfinished input of an app's functions (used when the app stops)."""
        for record in self.inputs.values():
            if record.status is not InputStatus.DONE and self.calls[record.call_id].app_id == app_id:
                self._publish(record, self._result_item(record, status, message))

    # ------------------------------------------------------------------ internals

    def ensure_capacity(self, function_id: str) -> None:
        """Start a container if none serves ``function_id``, or if all are saturated and we may add one."""
        if self.containers.closing:
            return
        live = self.containers.live(function_id)
        definition = self._state.runnable(function_id).definition
        limit = self._max_containers
        if definition.autoscaler_settings.max_containers:
            limit = min(limit, definition.autoscaler_settings.max_containers)
        pending = sum(1 for record in self._queues[function_id] if record.status is InputStatus.PENDING)
        busy = sum(len(c.inflight) for c in live)
        capacity = sum(c.max_inputs for c in live)
        if pending and (not live or (pending + busy > capacity and len(live) < limit)):
            self.containers.spawn(self._state.runnable(function_id))

    def _enqueue(self, record: InputRecord, retry_count: int) -> None:
        if record.timer is not None:
            record.timer.cancel()
        self._attempts.pop(record.attempt_token, None)
        record.retry_count = retry_count
        record.attempt_token = self._ids.new("at")
        self._attempts[record.attempt_token] = record.input_id
        record.status = InputStatus.PENDING
        record.task_id = None
        self._queues[record.function_id].append(record)
        self._queue_signals[record.function_id].notify()
        self.ensure_capacity(record.function_id)

    def _dispatch(self, record: InputRecord, container: Container) -> api_pb2.FunctionGetInputsItem:
        record.status = InputStatus.RUNNING
        record.task_id = container.task_id
        container.inflight.add(record.input_id)
        timeout = container.runnable.definition.timeout_secs
        if timeout:
            loop = asyncio.get_running_loop()
            record.timer = loop.call_later(timeout, self._on_timeout, record, record.attempt_token, timeout)
        return api_pb2.FunctionGetInputsItem(
            input_id=record.input_id,
            input=record.input,
            function_call_id=record.call_id,
            function_call_invocation_type=record.invocation_type,  # type: ignore[arg-type]
            retry_count=record.retry_count,
            attempt_token=record.attempt_token,
        )

    def _on_timeout(self, record: InputRecord, attempt_token: str, timeout: int) -> None:
        if record.attempt_token != attempt_token or record.status is not InputStatus.RUNNING:
            return
        container = self.containers.get(record.task_id or "")
        name = container.runnable.name if container else record.function_id
        self._finish_attempt(
            record, self._result_item(record, TIMEOUT, f"Function '{name}' timed out after {timeout}s")
        )
        if container is not None:
            self.containers.kill(container, f"input {record.input_id} timed out")

    def _finish_attempt(self, record: InputRecord, output: api_pb2.FunctionGetOutputsItem) -> None:
        if record.timer is not None:
            record.timer.cancel()
            record.timer = None
        container = self.containers.get(record.task_id) if record.task_id else None
        if container is not None:
            container.inflight.discard(record.input_id)
        policy = record.retry_policy
        if (
            output.result.status in RETRYABLE
            and policy is not None
            and not record.client_retries
            and record.retry_count < policy.retries
        ):
            record.status = InputStatus.WAITING_RETRY
            record.task_id = None
            delay = retry_delay_secs(policy, record.retry_count + 1)
            logger.info("retrying input %s in %.1fs (attempt %d failed)", record.input_id, delay, record.retry_count)
            asyncio.get_running_loop().call_later(delay, self._retry_later, record, record.attempt_token)
            return
        self._publish(record, output)

    def _retry_later(self, record: InputRecord, attempt_token: str) -> None:
        if record.status is InputStatus.WAITING_RETRY and record.attempt_token == attempt_token:
            self._enqueue(record, retry_count=record.retry_count + 1)

    def _publish(self, record: InputRecord, output: api_pb2.FunctionGetOutputsItem) -> None:
        if record.timer is not None:
            record.timer.cancel()
            record.timer = None
        record.status = InputStatus.DONE
        record.output = output
        if not record.client_retries:
            record.input = api_pb2.FunctionInput()  # release the payload; client retries resend it anyway
        call = self.calls[record.call_id]
        call.output_log.append(output)
        call.visible[record.idx] = output
        call.changed.notify()

    def _fail_startup(self, container: Container) -> None:
        """The container died before serving: fail the inputs waiting for it (startup errors are not retried)."""
        if any(c.state is ContainerState.READY for c in self.containers.live(container.function_id)):
            return  # another container serves this function; let it take the queue
        result = container.task_result or api_pb2.GenericResult(
            status=FAILURE,
            exception=(
                f"Container {container.task_id} for {container.runnable.name} exited with code "
                f"{container.exit_code} before it was ready (see its output in the app logs)"
            ),
        )
        data_format = api_pb2.DATA_FORMAT_PICKLE if result.data or result.data_blob_id else 0
        queue = self._queues[container.function_id]
        while queue:
            record = queue.popleft()
            if record.status is InputStatus.PENDING:
                item = api_pb2.FunctionGetOutputsItem(
                    result=result,
                    idx=record.idx,
                    input_id=record.input_id,
                    data_format=data_format,  # type: ignore[arg-type]
                    task_id=container.task_id,
                    retry_count=record.retry_count,
                )
                self._publish(record, item)

    @staticmethod
    def _result_item(record: InputRecord, status: int, message: str) -> api_pb2.FunctionGetOutputsItem:
        return api_pb2.FunctionGetOutputsItem(
            result=api_pb2.GenericResult(status=status, exception=message),  # type: ignore[arg-type]
            idx=record.idx,
            input_id=record.input_id,
            retry_count=record.retry_count,
            output_created_at=time.time(),
        )
