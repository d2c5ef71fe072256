"""RPCs that create and look up objects: secrets, mounts, images, blobs, functions and classes."""

from __future__ import annotations

import hashlib
import logging
import sys

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from .core import CallContext, EmulatorCore
from .state import FunctionRecord, SecretRecord, environment_name, function_data

logger = logging.getLogger(__name__)

_CREATE_TYPES = {
    api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
    api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS,
    api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS,
}


class ObjectRPCs:
    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.state = core.state

    def _own(self, app_id: str, object_id: str) -> None:
        app = self.state.apps.get(app_id)
        if app is not None:
            app.owned_object_ids.add(object_id)

    # ------------------------------------------------------------------ secrets

    async def SecretGetOrCreate(
        self, req: api_pb2.SecretGetOrCreateRequest, ctx: CallContext
    ) -> api_pb2.SecretGetOrCreateResponse:
        if not req.deployment_name:  # Secret.from_dict / env={...}: anonymous, owned by the app
            secret_id = self.state.ids.new("st")
            self.state.secrets[secret_id] = SecretRecord(secret_id, "", dict(req.env_dict))
            self._own(req.app_id, secret_id)
            return api_pb2.SecretGetOrCreateResponse(
                secret_id=secret_id, metadata=api_pb2.SecretMetadata(keys=sorted(req.env_dict))
            )
        name = req.deployment_name
        exists = name in self.state.named_secrets
        if req.object_creation_type in _CREATE_TYPES:  # `modal secret create`
            if exists and req.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
                raise GRPCError(Status.ALREADY_EXISTS, f"Secret '{name}' already exists")
            if not exists or req.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS:
                self.state.named_secrets[name] = dict(req.env_dict)
        elif not exists:
            known = ", ".join(sorted(self.state.named_secrets)) or "none"
            raise GRPCError(Status.NOT_FOUND, f"Secret '{name}' not found (the emulator has: {known})")
        values = self.state.named_secrets[name]
        missing = [key for key in req.required_keys if key not in values]
        if missing:
            raise GRPCError(Status.NOT_FOUND, f"Secret '{name}' is missing required key(s): {', '.join(missing)}")
        secret_id = self.state.named_secret_id(name)
        self._own(req.app_id, secret_id)
        return api_pb2.SecretGetOrCreateResponse(
            secret_id=secret_id, metadata=api_pb2.SecretMetadata(name=name, keys=sorted(values))
        )

    async def SecretList(self, req: api_pb2.SecretListRequest, ctx: CallContext) -> api_pb2.SecretListResponse:
        items = [
            api_pb2.SecretListItem(
                label=name,
                secret_id=self.state.named_secret_id(name),
                environment_name=environment_name(req.environment_name),
                metadata=api_pb2.SecretMetadata(name=name, keys=sorted(values)),
            )
            for name, values in sorted(self.state.named_secrets.items())
        ]
        return api_pb2.SecretListResponse(items=items, environment_name=environment_name(req.environment_name))

    # ------------------------------------------------------------------ mounts and blobs

    async def MountGetOrCreate(
        self, req: api_pb2.MountGetOrCreateRequest, ctx: CallContext
    ) -> api_pb2.MountGetOrCreateResponse:
        key = (req.environment_name, req.deployment_name)
        if req.deployment_name and not req.files and req.object_creation_type not in _CREATE_TYPES:
            mount_id = self.state.named_mounts.get(key)
            if mount_id is None:
                if req.namespace != api_pb2.DEPLOYMENT_NAMESPACE_GLOBAL:
                    raise GRPCError(Status.NOT_FOUND, f"Mount '{req.deployment_name}' not found")
                # Global mounts (e.g. modal-client-mount-<version>) are Modal-provided: the container runs on the
                # host interpreter, which already has the client, so an empty mount stands in for them.
                mount_id = self.state.ids.new("mo")
                self.state.mounts[mount_id] = []
                self.state.named_mounts[key] = mount_id
        else:
            mount_id = self.state.ids.new("mo")
            self.state.mounts[mount_id] = list(req.files)
            if req.deployment_name:
                self.state.named_mounts[key] = mount_id
            self._own(req.app_id, mount_id)
        checksum = hashlib.sha256(
            "".join(f.filename + f.sha256_hex for f in self.state.mounts[mount_id]).encode()
        ).hexdigest()
        return api_pb2.MountGetOrCreateResponse(
            mount_id=mount_id, handle_metadata=api_pb2.MountHandleMetadata(content_checksum_sha256_hex=checksum)
        )

    async def MountBatchedCheckExistence(
        self, req: api_pb2.MountBatchedCheckExistenceRequest, ctx: CallContext
    ) -> api_pb2.MountBatchedCheckExistenceResponse:
        missing = [h for h in req.sha256_hex_hashes if h not in self.state.files]
        return api_pb2.MountBatchedCheckExistenceResponse(missing_sha256_hex_hashes=missing)

    async def MountPutFile(self, req: api_pb2.MountPutFileRequest, ctx: CallContext) -> api_pb2.MountPutFileResponse:
        which = req.WhichOneof("data_oneof")
        if which == "data":
            self.state.files[req.sha256_hex] = req.data
        elif which == "data_blob_id":
            try:
                self.state.files[req.sha256_hex] = self.core.blobs.get(req.data_blob_id)
            except KeyError as exc:
                raise GRPCError(Status.NOT_FOUND, f"Blob {req.data_blob_id!r} not found") from exc
        return api_pb2.MountPutFileResponse(exists=req.sha256_hex in self.state.files)

    async def BlobCreate(self, req: api_pb2.BlobCreateRequest, ctx: CallContext) -> api_pb2.BlobCreateResponse:
        blob_id, url = self.core.blobs.create()
        return api_pb2.BlobCreateResponse(blob_ids=[blob_id], upload_urls=api_pb2.UploadUrlList(items=[url]))

    async def BlobGet(self, req: api_pb2.BlobGetRequest, ctx: CallContext) -> api_pb2.BlobGetResponse:
        try:
            return api_pb2.BlobGetResponse(download_url=self.core.blobs.download_url(req.blob_id))
        except KeyError as exc:
            raise GRPCError(Status.NOT_FOUND, f"Blob {req.blob_id!r} not found") from exc

    # ------------------------------------------------------------------ images

    async def ImageGetOrCreate(
        self, req: api_pb2.ImageGetOrCreateRequest, ctx: CallContext
    ) -> api_pb2.ImageGetOrCreateResponse:
        """Record the recipe and report success at once: nothing is built (see ``images.py``)."""
        digest = hashlib.sha256(req.image.SerializeToString(deterministic=True)).hexdigest()[:20]
        image_id = req.existing_image_id or f"im-{digest}"
        self.state.images[image_id] = req.image
        self._own(req.app_id, image_id)
        if req.image.HasField("build_function"):
            logger.warning("image %s has a run_function build step; the emulator does not run it", image_id)
        metadata = api_pb2.ImageMetadata(
            python_version_info=sys.version.split()[0], image_builder_version=req.builder_version or "2025.06"
        )
        return api_pb2.ImageGetOrCreateResponse(
            image_id=image_id,
            result=api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS),
            metadata=metadata,
        )

    # ------------------------------------------------------------------ functions and classes

    async def FunctionPrecreate(
        self, req: api_pb2.FunctionPrecreateRequest, ctx: CallContext
    ) -> api_pb2.FunctionPrecreateResponse:
        function_id = req.existing_function_id or self.state.ids.new("fu")
        if function_id not in self.state.functions:
            stub = api_pb2.Function(
                function_name=req.function_name,
                function_type=req.function_type,
                function_schema=req.function_schema,
                supported_input_formats=req.supported_input_formats,
                supported_output_formats=req.supported_output_formats,
            )
            for name, method in req.method_definitions.items():
                stub.method_definitions[name].CopyFrom(method)
            self.state.functions[function_id] = FunctionRecord(function_id, req.app_id, stub)
        return api_pb2.FunctionPrecreateResponse(
            function_id=function_id, handle_metadata=self.state.function_metadata(function_id)
        )

    async def FunctionCreate(
        self, req: api_pb2.FunctionCreateRequest, ctx: CallContext
    ) -> api_pb2.FunctionCreateResponse:
        if req.HasField("function"):
            definition = req.function
        elif req.HasField("function_data") and req.function_data.ranked_functions:
            definition = req.function_data.ranked_functions[0].function  # gpu=[...] fallbacks: take the first
        else:
            raise GRPCError(Status.INVALID_ARGUMENT, "FunctionCreate needs a function definition")
        if definition.webhook_config.type:
            logger.warning("%s is a web endpoint: its HTTP ingress is not emulated", definition.function_name)
        function_id = req.existing_function_id or self.state.ids.new("fu")
        record = self.state.functions.get(function_id)
        if record is None:
            record = self.state.functions[function_id] = FunctionRecord(function_id, req.app_id, definition)
        record.app_id = req.app_id
        record.definition = definition
        record.generation += 1
        return api_pb2.FunctionCreateResponse(
            function_id=function_id,
            function=definition,
            handle_metadata=self.state.function_metadata(function_id),
            function_data=function_data(definition),
        )

    async def FunctionGet(self, req: api_pb2.FunctionGetRequest, ctx: CallContext) -> api_pb2.FunctionGetResponse:
        record = self.state.lookup_function(req.app_name, req.environment_name, req.object_tag)
        return api_pb2.FunctionGetResponse(
            function_id=record.function_id,
            handle_metadata=self.state.function_metadata(record.function_id),
            function=function_data(record.definition),
        )

    async def FunctionGetById(
        self, req: api_pb2.FunctionGetByIdRequest, ctx: CallContext
    ) -> api_pb2.FunctionGetByIdResponse:
        runnable = self.state.runnable(req.function_id)
        return api_pb2.FunctionGetByIdResponse(
            function=function_data(runnable.definition),
            handle_metadata=self.state.function_metadata(runnable.base_function_id),
        )

    async def FunctionBindParams(
        self, req: api_pb2.FunctionBindParamsRequest, ctx: CallContext
    ) -> api_pb2.FunctionBindParamsResponse:
        options = req.function_options if req.HasField("function_options") else None
        bound = self.state.bind(req.function_id, req.serialized_params, options)
        metadata = self.state.function_metadata(req.function_id)
        metadata.base_function_id = req.function_id
        return api_pb2.FunctionBindParamsResponse(bound_function_id=bound.function_id, handle_metadata=metadata)

    async def FunctionUpdateSchedulingParams(
        self, req: api_pb2.FunctionUpdateSchedulingParamsRequest, ctx: CallContext
    ) -> api_pb2.FunctionUpdateSchedulingParamsResponse:
        """Autoscaler updates are accepted and remembered, but the emulator does not keep warm pools."""
        record = self.state.function(req.function_id)
        record.definition.autoscaler_settings.MergeFrom(req.settings)
        return api_pb2.FunctionUpdateSchedulingParamsResponse(current_settings=record.definition.autoscaler_settings)

    async def ClassCreate(self, req: api_pb2.ClassCreateRequest, ctx: CallContext) -> api_pb2.ClassCreateResponse:
        class_id = req.existing_class_id or self.state.ids.new("cs")
        self.state.classes[class_id] = req.app_id
        return api_pb2.ClassCreateResponse(class_id=class_id, handle_metadata=api_pb2.ClassHandleMetadata())

    async def ClassGet(self, req: api_pb2.ClassGetRequest, ctx: CallContext) -> api_pb2.ClassGetResponse:
        class_id = self.state.lookup_class(req.app_name, req.environment_name, req.object_tag)
        return api_pb2.ClassGetResponse(class_id=class_id, handle_metadata=api_pb2.ClassHandleMetadata())
