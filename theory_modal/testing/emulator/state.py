"""The emulated workspace: apps, functions, classes, secrets, mounts and images, kept in memory.

This module holds data and lookups only; it starts no processes and does no I/O. Everything here is touched
from the emulator's event-loop thread alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from .ids import IdFactory

DEFAULT_ENVIRONMENT = "main"
MAX_OBJECT_SIZE_BYTES = 2 * 1024 * 1024  # the control plane's inline payload limit (modal._utils.blob_utils)


def environment_name(name: str) -> str:
    """The client sends ``""`` for "the default environment"; we call it ``main`` like Modal does."""
    return name or DEFAULT_ENVIRONMENT


@dataclass(eq=False)
class AppRecord:
    app_id: str
    description: str
    environment: str
    state: int  # api_pb2.AppState
    name: str = ""
    function_ids: dict[str, str] = field(default_factory=dict)  # tag -> function id
    class_ids: dict[str, str] = field(default_factory=dict)  # tag -> class id
    owned_object_ids: set[str] = field(default_factory=set)  # secrets, images, mounts created for the app
    created_at: float = field(default_factory=time.time)
    last_heartbeat: float = field(default_factory=time.monotonic)
    deployed_at: float = 0.0
    stopped_at: float = 0.0

    @property
    def is_stopped(self) -> bool:
        return self.state == api_pb2.APP_STATE_STOPPED


@dataclass(eq=False)
class FunctionRecord:
    """A function (or a class's ``Cls.*`` service function) as created by ``FunctionPrecreate``/``FunctionCreate``."""

    function_id: str
    app_id: str
    definition: api_pb2.Function
    generation: int = 0  # bumped by each FunctionCreate (i.e. each deploy of this tag)


@dataclass(eq=False)
class BoundFunction:
    """A ``Cls`` instance (``Model(name=...)``) or ``with_options`` variant: a base function plus parameters."""

    function_id: str
    base_function_id: str
    serialized_params: bytes
    options: api_pb2.FunctionOptions | None


@dataclass(eq=False)
class SecretRecord:
    secret_id: str
    name: str  # "" for anonymous secrets (Secret.from_dict, env={...})
    values: dict[str, str] = field(default_factory=dict)  # only for anonymous secrets


@dataclass(frozen=True)
class Runnable:
    """What a container runs: the effective definition for a (possibly bound) function id."""

    function_id: str  # the id inputs are queued under (a base or a bound function id)
    base_function_id: str
    app_id: str
    definition: api_pb2.Function
    serialized_params: bytes = b""

    @property
    def name(self) -> str:
        return self.definition.function_name


def apply_function_options(definition: api_pb2.Function, options: api_pb2.FunctionOptions) -> None:
    """Apply the parts of ``with_options``/``with_concurrency`` that change container behaviour."""
    if options.replace_secret_ids:
        del definition.secret_ids[:]
    definition.secret_ids.extend(options.secret_ids)
    definition.mount_ids.extend(options.mount_ids)
    if options.HasField("retry_policy"):
        definition.retry_policy.CopyFrom(options.retry_policy)
    if options.HasField("timeout_secs"):
        definition.timeout_secs = options.timeout_secs
    if options.HasField("max_concurrent_inputs"):
        definition.max_concurrent_inputs = options.max_concurrent_inputs
    if options.HasField("target_concurrent_inputs"):
        definition.target_concurrent_inputs = options.target_concurrent_inputs
    if options.HasField("concurrency_limit"):
        definition.autoscaler_settings.max_containers = options.concurrency_limit
    if options.HasField("batch_max_size"):
        definition.batch_max_size = options.batch_max_size
    if options.HasField("batch_linger_ms"):
        definition.batch_linger_ms = options.batch_linger_ms


def copy_common_fields(source: object, target: object) -> None:
    """Copy every field that ``source`` and ``target`` protos share by name and type (maps included)."""
    src_fields = source.DESCRIPTOR.fields_by_name  # type: ignore[attr-defined]
    for dst_field in target.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        src_field = src_fields.get(dst_field.name)
        if src_field is None or src_field.type != dst_field.type:
            continue
        value = getattr(source, src_field.name)
        if dst_field.message_type is not None:
            if dst_field.message_type.GetOptions().map_entry:
                dst_map = getattr(target, dst_field.name)
                value_is_message = dst_field.message_type.fields_by_name["value"].message_type is not None
                for key, item in value.items():
                    if value_is_message:
                        dst_map[key].CopyFrom(item)
                    else:
                        dst_map[key] = item
                continue
            if dst_field.message_type.full_name != src_field.message_type.full_name:
                continue
            if dst_field.is_repeated:
                getattr(target, dst_field.name).extend(value)
            elif source.HasField(src_field.name):  # type: ignore[attr-defined]
                getattr(target, dst_field.name).CopyFrom(value)
        elif dst_field.is_repeated:
            getattr(target, dst_field.name).extend(value)
        elif not src_field.has_presence or source.HasField(src_field.name):  # type: ignore[attr-defined]
            setattr(target, dst_field.name, value)


def function_data(definition: api_pb2.Function) -> api_pb2.FunctionData:
    """The ``FunctionData`` view of a definition; the client requires ``ranked_functions`` to be non-empty."""
    data = api_pb2.FunctionData()
    copy_common_fields(definition, data)
    data.ranked_functions.append(api_pb2.FunctionData.RankedFunction(rank=0, function=definition))
    return data


class WorkspaceState:
    """All objects of the emulated workspace, and the lookups the RPC handlers need."""

    def __init__(self, ids: IdFactory, secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.ids = ids
        self.apps: dict[str, AppRecord] = {}
        self.deployments: dict[tuple[str, str], str] = {}  # (environment, name) -> app id
        self.functions: dict[str, FunctionRecord] = {}
        self.bound: dict[str, BoundFunction] = {}
        self.bound_by_key: dict[bytes, str] = {}
        self.classes: dict[str, str] = {}  # class id -> app id
        self.named_secrets: dict[str, dict[str, str]] = {k: dict(v) for k, v in (secrets or {}).items()}
        self.secrets: dict[str, SecretRecord] = {}
        self.secret_ids_by_name: dict[str, str] = {}
        self.mounts: dict[str, list[api_pb2.MountFile]] = {}
        self.named_mounts: dict[tuple[str, str], str] = {}
        self.files: dict[str, bytes] = {}  # sha256 hex -> content (uploaded mount files)
        self.images: dict[str, api_pb2.Image] = {}

    # ------------------------------------------------------------------ apps

    def create_app(self, description: str, environment: str, state: int, name: str = "") -> AppRecord:
        app = AppRecord(self.ids.new("ap"), description, environment_name(environment), state, name=name)
        self.apps[app.app_id] = app
        return app

    def app(self, app_id: str) -> AppRecord:
        app = self.apps.get(app_id)
        if app is None:
            raise GRPCError(Status.NOT_FOUND, f"App {app_id!r} not found")
        return app

    def deployed_app(self, name: str, environment: str) -> AppRecord | None:
        app_id = self.deployments.get((environment_name(environment), name))
        return self.apps.get(app_id) if app_id else None

    def require_deployed_app(self, name: str, environment: str) -> AppRecord:
        app = self.deployed_app(name, environment)
        if app is None:
            raise GRPCError(
                Status.NOT_FOUND, f"App '{name}' not found in environment '{environment_name(environment)}'"
            )
        return app

    def register_deployment(self, app: AppRecord, name: str) -> None:
        app.name = name
        app.deployed_at = time.time()
        self.deployments[(app.environment, name)] = app.app_id

    def forget_deployment(self, app: AppRecord) -> None:
        key = (app.environment, app.name)
        if self.deployments.get(key) == app.app_id:
            del self.deployments[key]

    def layout(self, app_id: str) -> api_pb2.AppLayout:
        """The app's objects with their handle metadata; containers hydrate every dependency from it."""
        app = self.app(app_id)
        layout = api_pb2.AppLayout(function_ids=app.function_ids, class_ids=app.class_ids)
        object_ids: set[str] = set(app.owned_object_ids)
        object_ids.update(app.function_ids.values(), app.class_ids.values())
        for function_id in app.function_ids.values():
            record = self.functions.get(function_id)
            if record is not None:
                object_ids.update(dep.object_id for dep in record.definition.object_dependencies)
                object_ids.update(record.definition.mount_ids)
        for object_id in sorted(object_ids):
            layout.objects.append(self.object_entry(object_id))
        return layout

    def object_entry(self, object_id: str) -> api_pb2.Object:
        if object_id in self.functions:
            return api_pb2.Object(object_id=object_id, function_handle_metadata=self.function_metadata(object_id))
        if object_id in self.classes:
            return api_pb2.Object(object_id=object_id, class_handle_metadata=api_pb2.ClassHandleMetadata())
        if object_id in self.mounts:
            return api_pb2.Object(object_id=object_id, mount_handle_metadata=api_pb2.MountHandleMetadata())
        return api_pb2.Object(object_id=object_id)  # secrets, images, ...: no handle metadata

    # ------------------------------------------------------------------ functions and classes

    def function(self, function_id: str) -> FunctionRecord:
        record = self.functions.get(function_id)
        if record is None:
            raise GRPCError(Status.NOT_FOUND, f"Function {function_id!r} not found")
        return record

    def function_metadata(self, function_id: str) -> api_pb2.FunctionHandleMetadata:
        record = self.function(function_id)
        fn = record.definition
        meta = api_pb2.FunctionHandleMetadata(
            function_name=fn.function_name,
            function_type=fn.function_type,
            is_method=fn.is_method,
            definition_id=f"de-{function_id}-{record.generation}",
            class_parameter_info=fn.class_parameter_info,
            function_schema=fn.function_schema,
            supported_input_formats=fn.supported_input_formats,
            supported_output_formats=fn.supported_output_formats,
            app_id=record.app_id,
            max_object_size_bytes=MAX_OBJECT_SIZE_BYTES,
        )
        for method_name, method in fn.method_definitions.items():
            meta.method_handle_metadata[method_name].CopyFrom(
                api_pb2.FunctionHandleMetadata(
                    function_name=method.function_name,
                    function_type=method.function_type,
                    use_method_name=method_name,
                    is_method=True,
                    function_schema=method.function_schema,
                    supported_input_formats=method.supported_input_formats,
                    supported_output_formats=method.supported_output_formats,
                    app_id=record.app_id,
                    max_object_size_bytes=MAX_OBJECT_SIZE_BYTES,
                )
            )
        return meta

    def lookup_function(self, app_name: str, environment: str, tag: str) -> FunctionRecord:
        app = self.require_deployed_app(app_name, environment)
        function_id = app.function_ids.get(tag)
        if function_id is None:
            details = None
            if tag in app.class_ids:
                details = [api_pb2.FunctionLookupError(reason=api_pb2.FunctionLookupError.REASON_CLASS_NAME_USED)]
            raise GRPCError(Status.NOT_FOUND, f"Function '{tag}' not found in app '{app_name}'", details)
        return self.function(function_id)

    def lookup_class(self, app_name: str, environment: str, tag: str) -> str:
        app = self.require_deployed_app(app_name, environment)
        class_id = app.class_ids.get(tag)
        if class_id is None:
            raise GRPCError(Status.NOT_FOUND, f"Class '{tag}' not found in app '{app_name}'")
        return class_id

    def bind(
        self, base_function_id: str, serialized_params: bytes, options: api_pb2.FunctionOptions | None
    ) -> BoundFunction:
        """Bound ids are deterministic per request, as the client's bind cache assumes."""
        self.function(base_function_id)
        key = api_pb2.FunctionBindParamsRequest(
            function_id=base_function_id, serialized_params=serialized_params, function_options=options
        ).SerializeToString(deterministic=True)
        existing = self.bound_by_key.get(key)
        if existing is not None:
            return self.bound[existing]
        bound = BoundFunction(self.ids.new("fu"), base_function_id, serialized_params, options)
        self.bound[bound.function_id] = bound
        self.bound_by_key[key] = bound.function_id
        return bound

    def runnable(self, function_id: str) -> Runnable:
        """Resolve a (base or bound) function id to what a container for it runs, using current definitions."""
        bound = self.bound.get(function_id)
        if bound is None:
            record = self.function(function_id)
            return Runnable(function_id, function_id, record.app_id, record.definition)
        record = self.function(bound.base_function_id)
        definition = api_pb2.Function()
        definition.CopyFrom(record.definition)
        if bound.options is not None:
            apply_function_options(definition, bound.options)
        return Runnable(function_id, record.function_id, record.app_id, definition, bound.serialized_params)

    # ------------------------------------------------------------------ secrets, mounts, images

    def secret_env(self, secret_id: str) -> dict[str, str]:
        record = self.secrets.get(secret_id)
        if record is None:
            return {}
        if record.name:
            return dict(self.named_secrets.get(record.name, {}))
        return dict(record.values)

    def named_secret_id(self, name: str) -> str:
        secret_id = self.secret_ids_by_name.get(name)
        if secret_id is None:
            secret_id = self.ids.new("st")
            self.secrets[secret_id] = SecretRecord(secret_id, name)
            self.secret_ids_by_name[name] = secret_id
        return secret_id

    def mount_files(self, mount_id: str) -> list[tuple[str, bytes, int | None]]:
        """(absolute path, content, mode) of each file of a mount whose content was uploaded."""
        out = []
        for mount_file in self.mounts.get(mount_id, []):
            content = self.files.get(mount_file.sha256_hex)
            if content is not None:
                mode = mount_file.mode if mount_file.HasField("mode") else None
                out.append((mount_file.filename, content, mode))
        return out
