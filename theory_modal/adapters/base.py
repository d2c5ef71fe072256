"""The adapter interface: run a processor somewhere, through one shared front half.

- ``run(ref, payload) -> dict``: the response dict (the LLMReply dict plus ``ref``).
- ``stream(ref, payload) -> RunStream``: iterate ``str`` chunks; ``.response`` once exhausted.
- ``map(ref, payloads) -> iterator of dict``: batch, in input order; each result carries ``index``, and a
  failed item is ``{"index", "ref", "mode", "error": {...}}`` instead of costing the others.

Every backend speaks the wire format (:mod:`theory_modal.wire`): the functions return Responses, yield
stream events and raise :func:`~theory_modal.wire.remote_error` for provider errors; this front half turns
those back into ``str`` chunks and typed :class:`~providers.errors.ProviderError` s.

Backends (``local.py``, ``modal.py``) implement ``_call``, ``_call_gen`` and ``_map`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from providers import telemetry
from providers.errors import InvalidRequestError, ProviderUnavailableError
from theory_modal.catalog import Processor, resolve
from theory_modal.wire import DEFAULT_MODE, MODES, Request, error_from_remote, map_error_item, map_item

__all__ = ["Adapter", "AdapterError", "RunStream"]


class AdapterError(RuntimeError):
    """The adapter could not reach or find what runs the processor (not the provider's own failure)."""

    kind = "adapter"
    retryable = False


def rebuild(exc: BaseException) -> BaseException:
    """A remote error object back to its typed ProviderError (see :func:`theory_modal.wire.remote_error`)."""
    return error_from_remote(exc)


def _typed_events(events: Iterator[Any]) -> Iterator[Any]:
    """Pass events through; provider errors come out typed. Closing this closes ``events`` at once."""
    try:
        for event in events:
            yield event
    except RuntimeError as exc:
        typed = rebuild(exc)
        if typed is exc:
            raise
        raise typed from None
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


class RunStream:
    """Iterate ``str`` chunks; after exhaustion ``.response`` is the final Response (with usage and mode).

    Reads the wire's stream events: ``start`` (remembers ``function_call_id``), ``delta`` (its text is the
    chunk), ``done`` (the Response). :meth:`close` before ``done`` also cancels the remote call, so the
    container stops working (and reading upstream) for a caller that went away.
    """

    def __init__(self, events: Iterator[Any], *, cancel: Callable[[str], None] | None = None) -> None:
        self._events = _typed_events(iter(events))
        self._cancel = cancel
        self._response: dict[str, Any] | None = None
        self._closed = False
        self.function_call_id: str | None = None

    def __iter__(self) -> RunStream:
        return self

    def __next__(self) -> str:
        while True:
            if self._response is not None or self._closed:
                raise StopIteration
            try:
                event = next(self._events)
            except StopIteration:
                self._closed = True
                raise ProviderUnavailableError(
                    "the stream ended without its final 'done' event (the remote side went away); retry the call"
                ) from None
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "delta":
                return event["text"]
            if kind == "start":
                self.function_call_id = event.get("function_call_id")
                continue
            if kind == "done":
                self._response = event["response"]
                for _ in self._events:  # let the (remote) generator end by itself: closing a suspended one
                    pass  # makes modal's event-loop bridge print tracebacks
                self._finish()
                raise StopIteration
            self.close()
            raise ProviderUnavailableError(f"unexpected stream event {str(event)[:200]!r}: the two sides speak "
                                           "different wire formats; deploy this package's version")

    @property
    def response(self) -> dict[str, Any]:
        if self._response is None:
            raise RuntimeError("the stream has not finished: iterate it to the end before reading .response")
        return self._response

    def _finish(self) -> None:
        self._closed = True
        self._events.close()

    def close(self) -> None:
        """Stop early: closes the generator now and, if the stream had not finished, cancels the remote call."""
        unfinished = self._response is None and not self._closed
        self._finish()
        if unfinished and self._cancel is not None and self.function_call_id:
            self._cancel(self.function_call_id)

    def __enter__(self) -> RunStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _body(payload: dict[str, Any], provider: str) -> dict[str, Any]:
    """The validated request (``provider``'s model grammar), carrying the caller's trace context (unless it
    brought its own), so the function's span is a child of the caller's span."""
    body = Request.from_dict(payload, provider=provider).to_dict()
    if "trace" not in body:
        trace = telemetry.inject_trace()
        if trace:
            body["trace"] = trace
    return body


class Adapter:
    """Shared front half: refs and payloads are validated here, before anything is sent anywhere."""

    name = "adapter"

    def _prepare(self, ref: str, payload: dict[str, Any]) -> tuple[Processor, dict[str, Any]]:
        p = resolve(ref)
        return p, _body(payload, p.provider)

    def run(self, ref: str, payload: dict[str, Any]) -> dict[str, Any]:
        p, body = self._prepare(ref, payload)
        try:
            return self._call(p.chat_function, body)
        except RuntimeError as exc:
            typed = rebuild(exc)
            if typed is exc:
                raise
            raise typed from None

    def stream(self, ref: str, payload: dict[str, Any]) -> RunStream:
        p, body = self._prepare(ref, payload)
        return RunStream(self._call_gen(p.stream_function, body), cancel=self._cancel)

    def map(self, ref: str, payloads: Iterable[dict[str, Any]], *, concurrency: int = 8) -> Iterator[dict[str, Any]]:
        p = resolve(ref)
        prepared: list[tuple[int, str, dict[str, Any] | None, BaseException | None]] = []
        for i, payload in enumerate(payloads):
            mode = payload.get("mode", DEFAULT_MODE) if isinstance(payload, dict) else DEFAULT_MODE
            mode = mode if mode in MODES else DEFAULT_MODE
            try:
                prepared.append((i, mode, _body(payload, p.provider), None))
            except InvalidRequestError as exc:
                prepared.append((i, mode, None, exc))
        valid = [body for _, _, body, _ in prepared if body is not None]
        results = self._map(p.chat_function, valid, concurrency) if valid else iter(())
        try:
            for i, mode, body, exc in prepared:
                if exc is not None:
                    yield map_error_item(i, p.ref, mode, exc)
                    continue
                result = next(results)
                if isinstance(result, BaseException):
                    yield map_error_item(i, p.ref, mode, rebuild(result))
                else:
                    yield map_item(i, result)
            for _ in results:  # every result is in: let the backend's generator end by itself, not by close()
                pass
        finally:
            # Finish the backend's map generator here, in this thread, not whenever it is garbage-collected.
            close = getattr(results, "close", None)
            if close is not None:
                close()

    # Backends implement these three, and may override _cancel.
    def _call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _call_gen(self, function: str, body: dict[str, Any]) -> Iterator[Any]:  # pragma: no cover
        raise NotImplementedError

    def _map(self, function: str, bodies: list[dict[str, Any]], concurrency: int) -> Iterator[Any]:  # pragma: no cover
        raise NotImplementedError

    def _cancel(self, function_call_id: str) -> None:
        """Cancel a remote call a caller abandoned (in-process, closing the generator is enough)."""
