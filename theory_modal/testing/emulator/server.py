"""gRPC front door: routes every RPC of ``ModalClient``, authenticates, and records gaps and errors.

All 285 RPCs of ``modal_proto.api_grpc.ModalClientBase`` are served. Those with an implementation in one of the
handler groups are dispatched to it; the others answer ``UNIMPLEMENTED`` (which the client does not retry, so a
gap fails fast as ``modal.exception.UnimplementedError``) and are appended to
``Diagnostics.unimplemented_calls`` so a test can assert that list stays empty.

Authentication mirrors Modal's split:
* clients (``x-modal-client-type: CLIENT``) must present the emulator's token id and secret, else
  ``UNAUTHENTICATED`` (``modal.exception.AuthError``);
* containers present their task id and a per-container secret (set through ``MODAL_OVERRIDE_HEADERS``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import secrets
from collections.abc import Callable
from typing import Any

import grpclib.const
import grpclib.server
from grpclib import GRPCError, Status
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Stream
from modal._utils.grpc_utils import CustomProtoStatusDetailsCodec
from modal_proto import api_grpc, api_pb2

from .containers import TASK_ID_HEADER, TASK_SECRET_HEADER
from .core import CallContext, EmulatorCore
from .rpc_apps import AppRPCs
from .rpc_calls import CallRPCs
from .rpc_container import ContainerRPCs
from .rpc_objects import ObjectRPCs

logger = logging.getLogger(__name__)


class _DroppedConnectionFilter(logging.Filter):
    """grpclib logs an ERROR when a client goes away mid-request (e.g. a container killed while long-polling
    for inputs, or ``modal run`` exiting). For an emulator that kills containers routinely, that is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (record.getMessage() == "Failed to handle cancellation" and isinstance(error, StreamTerminatedError))


# RPCs that report bad credentials as a result rather than an error, and so are allowed without a token.
_UNAUTHENTICATED_OK = frozenset({"TokenFlowCreate", "TokenFlowWait"})


@functools.cache
def client_rpc_mapping() -> dict[str, grpclib.const.Handler]:
    """Path -> handler metadata for every RPC of the Modal client API (taken from the generated servicer)."""
    names = api_grpc.ModalClientBase.__abstractmethods__
    placeholder = type("_AllRPCs", (api_grpc.ModalClientBase,), {name: (lambda self, stream: None) for name in names})
    mapping: dict[str, grpclib.const.Handler] = placeholder().__mapping__()
    return mapping


def rpc_name(path: str) -> str:
    return path.rsplit("/", 1)[1]


class Dispatcher:
    """The grpclib servicer (anything with ``__mapping__``) that fronts the handler groups."""

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self._impls: dict[str, Callable[..., Any]] = {}
        for group in (AppRPCs(core), ObjectRPCs(core), CallRPCs(core), ContainerRPCs(core)):
            for name, method in inspect.getmembers(group, inspect.ismethod):
                if name[:1].isupper():
                    assert name not in self._impls, f"RPC {name} implemented twice"
                    self._impls[name] = method
        known = {rpc_name(path) for path in client_rpc_mapping()}
        unknown = set(self._impls) - known
        assert not unknown, f"handlers for RPCs that modal's API does not have: {sorted(unknown)}"

    @property
    def implemented(self) -> list[str]:
        return sorted(self._impls)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            path: grpclib.const.Handler(
                self._make_handler(rpc_name(path), spec), spec.cardinality, spec.request_type, spec.reply_type
            )
            for path, spec in client_rpc_mapping().items()
        }

    def _authenticate(self, name: str, metadata: Any) -> CallContext:
        client_type = int(metadata.get("x-modal-client-type") or api_pb2.CLIENT_TYPE_CLIENT)
        if client_type == api_pb2.CLIENT_TYPE_CONTAINER:
            container = self.core.containers.authenticate(
                metadata.get(TASK_ID_HEADER, ""), metadata.get(TASK_SECRET_HEADER, "")
            )
            if container is None:
                raise GRPCError(Status.UNAUTHENTICATED, "Unknown container task (not started by this emulator)")
            return CallContext(name, client_type, container)
        if name in ContainerRPCs.CONTAINER_ONLY:
            raise GRPCError(Status.PERMISSION_DENIED, f"{name} may only be called from a container")
        if name not in _UNAUTHENTICATED_OK:
            config = self.core.config
            token_id = metadata.get("x-modal-token-id", "")
            token_secret = metadata.get("x-modal-token-secret", "")
            valid = (
                token_id != "ak-bad"
                and secrets.compare_digest(token_id, config.token_id)
                and secrets.compare_digest(token_secret, config.token_secret)
            )
            if not valid:
                raise GRPCError(
                    Status.UNAUTHENTICATED,
                    f"Invalid token id {token_id!r} or secret: this Modal emulator accepts only its own token "
                    "(see ModalEmulator.client_env())",
                )
        return CallContext(name, client_type)

    def _make_handler(self, name: str, spec: grpclib.const.Handler) -> Callable[[Stream[Any, Any]], Any]:
        streaming = spec.cardinality is grpclib.const.Cardinality.UNARY_STREAM
        diagnostics = self.core.diagnostics

        async def handle(stream: Stream[Any, Any]) -> None:
            request = await stream.recv_message()
            ctx = self._authenticate(name, stream.metadata)
            who = ctx.container.task_id if ctx.container else "client"
            impl = self._impls.get(name)
            diagnostics.rpc_counts[name] += 1
            if impl is None:
                diagnostics.unimplemented_calls.append(name)
                logger.warning("UNIMPLEMENTED RPC %s called by %s", name, who)
                raise GRPCError(Status.UNIMPLEMENTED, f"{name} is not implemented by the theory_modal emulator")
            logger.debug("%s <- %s", name, who)
            try:
                if streaming:
                    async for message in impl(request, ctx):
                        await stream.send_message(message)
                else:
                    reply = await impl(request, ctx)
                    await stream.send_message(reply if reply is not None else spec.reply_type())
            except (GRPCError, asyncio.CancelledError):
                raise
            except Exception as exc:
                diagnostics.server_errors.append(f"{name}: {exc!r}")
                logger.exception("emulator error in %s", name)
                raise GRPCError(Status.INTERNAL, f"emulator error in {name}: {exc!r}") from exc

        return handle


_dropped_connection_filter = _DroppedConnectionFilter()


def create_server(core: EmulatorCore) -> grpclib.server.Server:
    server_logger = logging.getLogger("grpclib.server")
    if _dropped_connection_filter not in server_logger.filters:
        server_logger.addFilter(_dropped_connection_filter)
    return grpclib.server.Server([Dispatcher(core)], status_details_codec=CustomProtoStatusDetailsCodec())
