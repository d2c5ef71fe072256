"""The adapter interface: run a processor somewhere, through one shared front half.

- ``run(ref, payload) -> dict``: the response dict (the LLMReply dict plus ``ref``).
- ``stream(ref, payload) -> RunStream``: iterate ``str`` chunks; ``.response`` once exhausted.
- ``map(ref, payloads) -> iterator of dict``: batch, in input order; each result carries ``index``, and a
  failed item is ``{"index", "ref", "error": {...}}`` instead of costing the others.

Backends (``local.py``, ``modal.py``) implement ``_call``, ``_call_gen`` and ``_map`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from providers import telemetry
from providers.errors import InvalidRequestError
from theory_modal.catalog import Processor, resolve
from theory_modal.wire import STREAM_END, Request, error_dict

__all__ = ["Adapter", "AdapterError", "RunStream"]


class AdapterError(RuntimeError):
    """The adapter could not reach or find what runs the processor (not the provider's own failure)."""

    kind = "adapter"


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


def _body(payload: dict[str, Any]) -> dict[str, Any]:
    """The validated request, carrying the caller's trace context (unless it brought its own), so the
    function's span is a child of the caller's span."""
    body = Request.from_dict(payload).to_dict()
    if "trace" not in body:
        trace = telemetry.inject_trace()
        if trace:
            body["trace"] = trace
    return body


class Adapter:
    """Shared front half: refs and payloads are validated here, before anything is sent anywhere."""

    name = "adapter"

    def _prepare(self, ref: str, payload: dict[str, Any]) -> tuple[Processor, dict[str, Any]]:
        return resolve(ref), _body(payload)

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
                prepared.append((i, _body(payload), None))
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
