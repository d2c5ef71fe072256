"""The in-process adapter: the Modal function objects' ``.local()``. No network, no Modal token.

The functions are async (as in a container), so this adapter runs them on one event loop of its own, in a
daemon thread shared by every LocalAdapter of the process: provider clients bound to a loop (LiteLLM's async
HTTP clients) stay valid from call to call, and sync callers never nest event loops. At exit the loop's
leftover tasks (LiteLLM's background logging) are cancelled and the thread is stopped and joined, so the
interpreter never finalizes while that thread holds a lock (which deadlocks the exit).

LiteLLM has exit hooks of its own that touch what lives on this loop: its logging worker's ``_flush_on_exit``
runs queued and dequeued-but-unstarted logging coroutines on a new loop in the main thread, and its client
cleanup closes the cached async clients. litellm is first imported inside a call, on this loop, i.e. after our
hook was registered, and ``atexit`` runs hooks last-registered first: so LiteLLM's hooks used to run while this
loop was still running its worker, and both threads could start the same coroutine ("cannot reuse already
awaited coroutine" printed at exit). Hence: once litellm is loaded our hook is registered again, to run first,
and it flushes and stops LiteLLM's logging worker on this loop, where it lives, before cancelling what is
left. LiteLLM's flush then finds nothing to do, and its client cleanup runs after this thread has stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from theory_modal.adapters.base import Adapter

__all__ = ["LocalAdapter"]

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_loop_lock = threading.Lock()
#: True once ``_stop_loop`` was registered again after litellm loaded (so it runs before LiteLLM's exit hooks).
_first_at_exit = False
_LITELLM_WORKER = "litellm.litellm_core_utils.logging_worker"


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=loop.run_forever, name="theory-modal-local-loop", daemon=True)
            _thread.start()
            _loop = loop
            atexit.register(_stop_loop)
        return _loop


def _keep_first_at_exit() -> None:
    """Once litellm is loaded (it registers its exit hooks at import), register ``_stop_loop`` again so that it
    runs before them (``atexit`` runs the last registered first). A dict lookup per call until then."""
    global _first_at_exit
    if not _first_at_exit and _LITELLM_WORKER in sys.modules:
        with _loop_lock:
            if _loop is not None and not _first_at_exit:
                atexit.unregister(_stop_loop)
                atexit.register(_stop_loop)
                _first_at_exit = True


async def _stop_litellm(timeout: float) -> None:
    """Flush and stop LiteLLM's logging worker on this loop (where it was started), so that LiteLLM's own exit
    hook, which runs later on a loop of its own in the main thread, finds nothing left to run."""
    worker_module = sys.modules.get(_LITELLM_WORKER)
    if worker_module is None:
        return
    worker = worker_module.GLOBAL_LOGGING_WORKER
    if getattr(worker, "_bound_loop", None) is asyncio.get_running_loop():  # a worker of another loop: not ours
        try:
            await asyncio.wait_for(worker.flush(), timeout)  # the logging callbacks run once, here
        except Exception:  # noqa: BLE001 - best effort, bounded (a timeout included)
            pass
        await worker.stop(discard_pending=True, timeout=timeout)


async def _cancel_leftovers(timeout: float = 2.0) -> None:
    try:
        await _stop_litellm(timeout)
    except Exception:  # noqa: BLE001 - best effort: what is left is cancelled below
        pass
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


def _stop_loop(timeout: float = 5.0) -> None:
    """Cancel what still runs on the loop, stop it and join its thread (at exit; idempotent)."""
    global _loop, _thread, _first_at_exit
    with _loop_lock:
        loop, thread, _loop, _thread, _first_at_exit = _loop, _thread, None, None, False
    if loop is None or thread is None:
        return
    try:
        asyncio.run_coroutine_threadsafe(_cancel_leftovers(), loop).result(timeout)
    except Exception:  # noqa: BLE001 - best effort: stopping must not fail the exit
        pass
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
    if not thread.is_alive():
        loop.close()


def _submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, _event_loop())


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return _submit(coro).result()
    finally:
        _keep_first_at_exit()


#: function name -> its ``.local`` (the Modal objects live for the process, so this is computed once).
_locals: dict[str, Callable[[dict[str, Any]], Any]] = {}


def _unwrapped_local(fn: Any) -> Callable[[dict[str, Any]], Any]:
    """``fn.local``, minus the synchronicity proxying: modal's own ``Function.local`` method, bound to the very
    ``_Function`` object behind ``fn`` (the object modal's synchronicity wrapper forwards to).

    ``fn.local(...)`` runs that same method with the public wrapper as ``self``, so each of the five attribute
    lookups it makes (``_is_local``, ``_get_source_info``, ``_spec_`` twice, ``_get_obj``) goes through a proxy
    that translates arguments and results: 21 us per call against 0.8 us for the same method on the
    underlying object (the function body it returns is identical). Everything ``.local`` checks still runs.
    Falls back to ``fn.local`` if a modal release moves these internals."""
    try:
        from modal._functions import _Function
        from modal._utils.async_utils import synchronizer

        impl = synchronizer._translate_in(fn)
        if isinstance(impl, _Function) and impl is not fn:
            return functools.partial(_Function.local, impl)
    except Exception:  # noqa: BLE001 - any internal change: use the public method
        pass
    return fn.local


class LocalAdapter(Adapter):
    """In-process: the Modal function objects' ``.local()``. No network, no Modal token."""

    name = "local"

    def _fn(self, function: str):
        from theory_modal.app import FUNCTIONS  # imports modal (~0.3 s), not litellm

        return FUNCTIONS[function]

    def _local(self, function: str) -> Callable[[dict[str, Any]], Any]:
        """The Modal function object's ``.local`` (see :func:`_unwrapped_local`)."""
        local = _locals.get(function)
        if local is None:
            local = _locals[function] = _unwrapped_local(self._fn(function))
        return local

    def _call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        return _run(self._local(function)(body))

    def _call_gen(self, function: str, body: dict[str, Any]) -> Iterator[Any]:
        agen = self._local(function)(body)
        try:
            while True:
                try:
                    event = _run(agen.__anext__())
                except StopAsyncIteration:
                    return
                yield event
        finally:
            _run(agen.aclose())  # closing the stream closes the provider's stream, on the loop that runs it

    def _map(self, function: str, bodies: list[dict[str, Any]], concurrency: int) -> Iterator[Any]:
        local = self._local(function)
        limit = asyncio.Semaphore(max(1, concurrency))

        async def one(body: dict[str, Any]) -> Any:
            async with limit:
                try:
                    return await local(body)
                except Exception as exc:  # noqa: BLE001 - one bad item never costs the others
                    return exc

        futures = [_submit(one(body)) for body in bodies]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()
            _keep_first_at_exit()
