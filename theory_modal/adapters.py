"""Adapters: one interface to run processors in-process (``local``) or on Modal (``modal``).

- ``run(ref, payload) -> dict``: the response dict (the LLMReply dict plus ``ref``).
- ``stream(ref, payload) -> RunStream``: iterate ``str`` chunks; ``.response`` once exhausted.
- ``map(ref, payloads) -> iterator of dict``: batch, in input order; each result carries ``index``, and a
  failed item is ``{"index", "ref", "error": {...}}`` instead of costing the others. On Modal this is
  ``Function.map``, which scales out across containers.

The local adapter runs the very same Modal function objects through ``.local()``: no network, no token.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from providers.errors import InvalidRequestError, ProviderError, redact
from theory_modal.processors import Processor, Request, resolve
from theory_modal.runtime import STREAM_END

__all__ = [
    "Adapter",
    "AdapterProvider",
    "LocalAdapter",
    "ModalAdapter",
    "RunStream",
    "AdapterError",
    "ModalCredentialsError",
    "ModalNotDeployedError",
    "ModalUnreachableError",
    "get_adapter",
    "error_dict",
    "ADAPTERS",
]

ADAPTERS = ("local", "modal")


class AdapterError(RuntimeError):
    """The adapter could not reach or find what runs the processor (not the provider's own failure)."""

    kind = "adapter"


class ModalCredentialsError(AdapterError):
    kind = "modal_credentials"


class ModalNotDeployedError(AdapterError):
    kind = "modal_not_deployed"


class ModalUnreachableError(AdapterError):
    kind = "modal_unreachable"


def error_dict(exc: BaseException) -> dict[str, Any]:
    """JSON-safe, secret-free description of a failure, for batch output."""
    if isinstance(exc, ProviderError):
        return exc.to_dict()
    return {"type": type(exc).__name__, "kind": getattr(exc, "kind", "error"), "message": redact(str(exc))}


class RunStream:
    """Iterate ``str`` chunks; after exhaustion ``.response`` is the final response dict (with usage)."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = iter(items)
        self._response: dict[str, Any] | None = None

    def __iter__(self) -> RunStream:
        return self

    def __next__(self) -> str:
        item = next(self._items)
        if isinstance(item, dict) and STREAM_END in item:
            self._response = item[STREAM_END]
            self.close()  # finish the (remote) generator here, in this thread, not at garbage collection
            raise StopIteration
        return item

    @property
    def response(self) -> dict[str, Any]:
        if self._response is None:
            raise RuntimeError("the stream has not finished: iterate it to the end before reading .response")
        return self._response

    def close(self) -> None:
        """Stop early. Closes the underlying (possibly remote) generator now, not whenever it is collected."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


class Adapter:
    """Shared front half: refs and payloads are validated here, before anything is sent anywhere."""

    name = "adapter"

    def _prepare(self, ref: str, payload: dict[str, Any]) -> tuple[Processor, dict[str, Any]]:
        return resolve(ref), Request.from_dict(payload).to_dict()

    def run(self, ref: str, payload: dict[str, Any]) -> dict[str, Any]:
        p, body = self._prepare(ref, payload)
        return self._call(p.chat_function, body)

    def stream(self, ref: str, payload: dict[str, Any]) -> RunStream:
        p, body = self._prepare(ref, payload)
        return RunStream(self._call_gen(p.stream_function, body))

    def map(self, ref: str, payloads: Iterable[dict[str, Any]], *, concurrency: int = 8) -> Iterator[dict[str, Any]]:
        p = resolve(ref)
        prepared: list[tuple[int, dict[str, Any] | None, BaseException | None]] = []
        for i, payload in enumerate(payloads):
            try:
                prepared.append((i, Request.from_dict(payload).to_dict(), None))
            except InvalidRequestError as exc:
                prepared.append((i, None, exc))
        valid = [(i, body) for i, body, _ in prepared if body is not None]
        results = self._map(p.chat_function, [body for _, body in valid], concurrency)
        result_iter = iter(results)
        try:
            for i, body, exc in prepared:
                if exc is not None:
                    yield {"index": i, "ref": p.ref, "error": error_dict(exc)}
                    continue
                result = next(result_iter)
                if isinstance(result, BaseException):
                    yield {"index": i, "ref": p.ref, "error": error_dict(result)}
                else:
                    yield {"index": i, **result}
        finally:
            # Finish Modal's map generator here, in this thread, not whenever it is garbage-collected.
            close = getattr(result_iter, "close", None)
            if close is not None:
                close()

    # Backends implement these three.
    def _call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _call_gen(self, function: str, body: dict[str, Any]) -> Iterator[Any]:  # pragma: no cover
        raise NotImplementedError

    def _map(self, function: str, bodies: list[dict[str, Any]], concurrency: int) -> Iterator[Any]:  # pragma: no cover
        raise NotImplementedError


class LocalAdapter(Adapter):
    """In-process: the Modal function objects' ``.local()``. No network, no Modal token."""

    name = "local"

    def _fn(self, function: str):
        from theory_modal.app import FUNCTIONS  # imports modal (~0.3 s), not litellm

        return FUNCTIONS[function]

    def _call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._fn(function).local(body)

    def _call_gen(self, function: str, body: dict[str, Any]) -> Iterator[Any]:
        return self._fn(function).local(body)

    def _map(self, function: str, bodies: list[dict[str, Any]], concurrency: int) -> Iterator[Any]:
        fn = self._fn(function)

        def one(body: dict[str, Any]) -> Any:
            try:
                return fn.local(body)
            except Exception as exc:  # noqa: BLE001 - one bad item never costs the others
                return exc

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            yield from pool.map(one, bodies)


class ModalAdapter(Adapter):
    """Remote calls to the deployed app: ``Function.from_name(app, fn)`` with ``.remote`` / ``.remote_gen`` /
    ``.map``. Lookups fail fast, with one line each, for: no credentials, not deployed, unreachable."""

    name = "modal"

    def __init__(self, app_name: str | None = None, *, environment: str | None = None, connect_timeout: float = 10.0):
        self.app_name = app_name or os.environ.get("THEORY_MODAL_APP", "").strip() or "theory"
        self.environment = environment
        self.connect_timeout = float(connect_timeout)
        self._functions: dict[str, Any] = {}
        self._client: Any = None  # our own modal.Client, created by the first successful lookup
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lookups
    def _check_credentials(self) -> None:
        from modal.config import config

        has_token = bool(config.get("token_id") and config.get("token_secret"))
        has_oauth = bool(os.environ.get("MODAL_OAUTH_REFRESH_TOKEN"))
        if not (has_token or has_oauth):
            raise ModalCredentialsError(
                "No Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET."
            )

    def _server(self) -> str:
        from modal.config import config

        return str(config.get("server_url"))

    def _translate(self, exc: BaseException, function: str) -> BaseException:
        """Modal's lookup/transport exceptions -> one actionable line. User exceptions pass through unchanged."""
        import modal.exception as mx

        env = self.environment or os.environ.get("MODAL_ENVIRONMENT") or "the default environment"
        if isinstance(exc, mx.AuthError):
            return ModalCredentialsError(
                "Modal rejected the credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET."
            )
        if isinstance(exc, mx.NotFoundError):
            return ModalNotDeployedError(
                f"Modal app '{self.app_name}' has no function '{function}' in {env}: deploy it with "
                "`modal deploy deploy.py`."
            )
        if isinstance(exc, (mx.ConnectionError, TimeoutError, mx.TimeoutError)):
            return ModalUnreachableError(
                f"Modal control plane unreachable at {self._server()}: check the network, or MODAL_SERVER_URL."
            )
        return exc

    def _new_client(self):
        """A client of our own, not modal's process-wide one: ``Client.from_env`` holds a class-wide lock while
        it connects, so one lookup stuck on a dead control plane would block every Modal call in the process
        for ~60 s. OAuth setups fall back to the shared client."""
        import modal
        from modal.config import config

        token_id, token_secret = config.get("token_id"), config.get("token_secret")
        if token_id and token_secret:
            return modal.Client.from_credentials(token_id, token_secret)
        return None

    def _function(self, function: str):
        with self._lock:
            fn = self._functions.get(function)
        if fn is not None:
            return fn
        self._check_credentials()
        import modal

        outcome: list[Any] = []

        def lookup() -> None:
            try:
                with self._lock:
                    client = self._client
                if client is None:
                    client = self._new_client()
                found = modal.Function.from_name(
                    self.app_name, function, environment_name=self.environment, client=client
                )
                found.hydrate()
                outcome.append((found, client))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome.append(exc)

        # The client retries a dead control plane for ~60 s; bound it. The daemon thread dies with the process.
        worker = threading.Thread(target=lookup, name=f"modal-lookup-{function}", daemon=True)
        worker.start()
        worker.join(self.connect_timeout)
        if not outcome:
            raise ModalUnreachableError(
                f"Modal control plane unreachable at {self._server()} (no answer within {self.connect_timeout:g}s): "
                "check the network, or MODAL_SERVER_URL."
            )
        if isinstance(outcome[0], BaseException):
            raise self._translate(outcome[0], function) from None
        fn, client = outcome[0]
        with self._lock:
            self._functions[function] = fn
            self._client = client
        return fn

    # ------------------------------------------------------------------ calls
    def _call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(function)
        try:
            return fn.remote(body)
        except Exception as exc:
            translated = self._translate(exc, function)
            if translated is exc:
                raise
            raise translated from None

    def _call_gen(self, function: str, body: dict[str, Any]) -> Iterator[Any]:
        fn = self._function(function)
        try:
            yield from fn.remote_gen(body)
        except Exception as exc:
            translated = self._translate(exc, function)
            if translated is exc:
                raise
            raise translated from None

    def _map(self, function: str, bodies: list[dict[str, Any]], concurrency: int) -> Iterator[Any]:
        if not bodies:
            return iter(())
        fn = self._function(function)
        # Modal scales out across containers; ``concurrency`` is a local-adapter knob only.
        return fn.map(bodies, return_exceptions=True, order_outputs=True)


def get_adapter(name: str, **config: Any) -> Adapter:
    if name == "local":
        return LocalAdapter()
    if name == "modal":
        return ModalAdapter(**config)
    raise InvalidRequestError(f"unknown adapter {name!r}; choose one of: {', '.join(ADAPTERS)}")


class AdapterProvider:
    """The provider contract on top of an adapter: ``chat`` etc. run a processor locally or on Modal.

    Lets code written against ``LLMProvider`` (and the contract suite) use a deployed app unchanged:
    ``AdapterProvider(get_adapter("modal"), "llm/litellm@1", mode="live")``.
    """

    def __init__(self, adapter: Adapter, ref: str, *, mode: str = "smoke", model_default: str | None = None) -> None:
        from providers.registry import default_models

        self.adapter = adapter
        self.processor = resolve(ref)
        self.mode = mode
        self.name = self.processor.provider
        self.model_default = model_default or default_models.get(self.processor.provider, "")

    def _payload(self, prompt: Any, model: str | None, attachments: Any, options: dict[str, Any]) -> dict[str, Any]:
        from providers.request import check_attachments

        payload: dict[str, Any] = {"prompt": prompt, "mode": self.mode, "model": model or self.model_default}
        if options:
            payload["options"] = options
        atts = check_attachments(attachments)
        if atts:
            payload["attachments"] = [a.to_dict() for a in atts]
        return payload

    @staticmethod
    def _reply(resp: dict[str, Any]):
        from providers.contract import LLMReply

        return LLMReply.from_dict({k: v for k, v in resp.items() if k != "ref"})

    def chat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        return self._reply(self.adapter.run(self.processor.ref, self._payload(prompt, model, attachments, options)))

    def stream_chat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        from providers.streams import ChatStream

        run = self.adapter.stream(self.processor.ref, self._payload(prompt, model, attachments, options))

        def gen():
            try:
                yield from run
            finally:
                run.close()
            return self._reply(run.response)

        return ChatStream(gen())

    async def achat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        import asyncio

        payload = self._payload(prompt, model, attachments, options)
        return self._reply(await asyncio.to_thread(self.adapter.run, self.processor.ref, payload))

    def astream_chat(self, prompt: Any, *, model: str | None = None, attachments: Any = None, **options: Any):
        import asyncio

        from providers.streams import AsyncChatStream

        sync_stream = self.stream_chat(prompt, model=model, attachments=attachments, **options)
        done = object()

        async def agen():
            while True:
                chunk = await asyncio.to_thread(next, sync_stream, done)
                if chunk is done:
                    break
                yield chunk
            yield sync_stream.reply

        return AsyncChatStream(agen())
