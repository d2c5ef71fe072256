"""The LLMProvider contract over an adapter: code written against ``chat``/``stream_chat`` runs a processor
locally or on a deployed app, unchanged.

``history``, ``tools``, ``tool_choice``, ``output_retries`` and ``output_schema`` travel as wire fields; a
pydantic ``output_schema`` travels as its JSON Schema and ``reply.data`` is rebuilt as an instance here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from providers import telemetry
from theory_modal.adapters.base import Adapter
from theory_modal.catalog import resolve

__all__ = ["AdapterProvider"]

#: Keyword arguments of ``chat`` that are request fields of their own on the wire, not generation options.
_STRUCTURE = ("history", "output_schema", "tools", "tool_choice", "output_retries")


class AdapterProvider:
    """The provider contract on top of an adapter: ``chat`` etc. run a processor locally or on Modal.

    Lets code written against ``LLMProvider`` (and the contract suite) use a deployed app unchanged:
    ``AdapterProvider(get_adapter("modal"), "llm/litellm@1")``. ``mode`` defaults to ``live``, like the wire.

    ``fallbacks=`` travels in the request (the function walks the chain, in one round trip). Each call is a
    span here too; the adapter sends its trace context, so the function's span is its child.
    """

    def __init__(self, adapter: Adapter, ref: str, *, mode: str = "live", model_default: str | None = None) -> None:
        from providers.registry import default_models

        self.adapter = adapter
        self.processor = resolve(ref)
        self.mode = mode
        self.name = self.processor.provider
        self.model_default = model_default or default_models.get(self.processor.provider, "")

    def _payload(self, prompt: Any, model: str | None, attachments: Any, options: dict[str, Any]) -> dict[str, Any]:
        from providers.request import check_attachments

        structure = {k: options.pop(k) for k in _STRUCTURE if k in options}
        payload: dict[str, Any] = {"prompt": prompt, "mode": self.mode, "model": model or self.model_default}
        fallbacks = options.pop("fallbacks", None)
        if fallbacks is not None:
            payload["fallbacks"] = fallbacks
        if options:
            payload["options"] = options
        atts = check_attachments(attachments)
        if atts:
            payload["attachments"] = [a.to_dict() for a in atts]
        schema = structure.get("output_schema")
        if isinstance(schema, type) and callable(getattr(schema, "model_json_schema", None)):
            structure["output_schema"] = schema.model_json_schema()
        if isinstance(structure.get("tools"), (list, tuple)):
            structure["tools"] = [
                {**t, "parameters": t["parameters"].model_json_schema()}
                if isinstance(t, dict) and callable(getattr(t.get("parameters"), "model_json_schema", None)) else t
                for t in structure["tools"]
            ]
        history = structure.get("history")
        if isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
            structure["history"] = list(history)  # any Sequence -> a JSON list (a generator is refused, as in-process)
        payload.update({k: v for k, v in structure.items() if v is not None})
        return payload

    @staticmethod
    def _reply(resp: dict[str, Any], output_schema: Any = None):
        """The reply; with a pydantic ``output_schema``, ``data`` rebuilt as an instance of it. The processor
        validated only the model's JSON Schema, which cannot carry the model's own validators: data they refuse
        is an :class:`OutputValidationError` (as from ``chat()`` in-process), never a raw pydantic error."""
        from providers.contract import LLMReply
        from providers.errors import OutputValidationError
        from providers.structured import _is_model_class, _pydantic_message

        body = {k: v for k, v in resp.items() if k not in ("ref", "mode")}
        reply = LLMReply.from_dict(body)
        if reply.data is None or not _is_model_class(output_schema):
            return reply
        try:
            return LLMReply.from_dict(body, output_schema=output_schema)
        except ValueError as exc:  # pydantic's ValidationError
            raise OutputValidationError(
                f"the reply's data does not validate against {output_schema.__name__}: {_pydantic_message(exc)[:600]} "
                "(the processor checks the model's JSON Schema only, so its validators could not trigger a re-ask; "
                "express the constraint in the schema, e.g. Field(ge=...), or validate in-process)",
                raw_text=reply.text, usage=dict(reply.usage), provider=reply.provider, model=reply.model, attempts=1,
            ) from None

    def _call(self, payload: dict[str, Any], stream: bool) -> telemetry.Call:
        return telemetry.start_call(self.name, payload["model"], payload.get("options") or {},
                                    prompt=payload["prompt"], stream=stream)

    def chat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        schema = options.get("output_schema")
        payload = self._payload(prompt, model, attachments, options)
        with self._call(payload, stream=False) as call:
            reply = self._reply(self.adapter.run(self.processor.ref, payload), schema)
            call.succeeded(reply)
            return reply

    def stream_chat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        from providers.streams import ChatStream

        schema = options.get("output_schema")
        payload = self._payload(prompt, model, attachments, options)
        call = self._call(payload, stream=True)
        with call.opening():
            run = self.adapter.stream(self.processor.ref, payload)

        def gen():
            try:
                yield from run
            finally:
                run.close()
            return self._reply(run.response, schema)

        return ChatStream(call.stream(gen()))

    async def achat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        import asyncio

        schema = options.get("output_schema")
        payload = self._payload(prompt, model, attachments, options)
        with self._call(payload, stream=False) as call:
            reply = self._reply(await asyncio.to_thread(self.adapter.run, self.processor.ref, payload), schema)
            call.succeeded(reply)
            return reply

    def astream_chat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        import asyncio

        from providers.streams import AsyncChatStream

        sync_stream = self.stream_chat(prompt, model=model, attachments=attachments, **options)
        done = object()

        async def agen():
            try:
                while True:
                    chunk = await asyncio.to_thread(next, sync_stream, done)
                    if chunk is done:
                        break
                    yield chunk
            finally:
                sync_stream.close()
            yield sync_stream.reply

        return AsyncChatStream(agen())
