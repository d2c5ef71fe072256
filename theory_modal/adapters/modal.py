"""The Modal adapter: remote calls to the deployed app (``.remote`` / ``.remote_gen`` / ``.map``).

One ``modal.Client`` per adapter, created once under a lock (however many threads make the first call);
:meth:`ModalAdapter.close` (or ``with ModalAdapter() as a:``) closes it. Map and stream generators are closed
where they are consumed, so nothing is left for the garbage collector to finish (with stderr noise).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from theory_modal.adapters.base import Adapter, AdapterError

__all__ = [
    "ModalAdapter",
    "ModalCredentialsError",
    "ModalFunctionTimeoutError",
    "ModalNotDeployedError",
    "ModalUnreachableError",
]


class ModalCredentialsError(AdapterError):
    """No Modal credentials, or Modal rejected them."""

    kind = "modal_credentials"


class ModalNotDeployedError(AdapterError):
    """The app or function is not deployed in that environment."""

    kind = "modal_not_deployed"


class ModalUnreachableError(AdapterError):
    """The Modal control plane did not answer; trying again later may work."""

    kind = "modal_unreachable"
    retryable = True


class ModalFunctionTimeoutError(AdapterError):
    """The function ran past its Modal ``timeout`` and Modal stopped it (not a control-plane problem)."""

    kind = "modal_function_timeout"


def _timeout_of(function: str, message: str) -> str:
    """The function's timeout for the message: the catalogue's setting, else the figure Modal reported."""
    import re

    from theory_modal.catalog import PROCESSORS

    for p in PROCESSORS:
        if function in (p.chat_function, p.stream_function):
            return f"{p.serving.timeout}s"
    m = re.search(r"(\d+(?:\.\d+)?)\s*s(?:ec|econds)?\b", message)
    return f"{m.group(1)}s" if m else "its configured"


class ModalAdapter(Adapter):
    """Remote calls to the deployed app: ``Function.from_name(app, fn)`` with ``.remote`` / ``.remote_gen`` /
    ``.map``. Lookups fail fast, with one line each, for: no credentials, not deployed, unreachable."""

    name = "modal"

    def __init__(self, app_name: str | None = None, *, environment: str | None = None, connect_timeout: float = 10.0):
        self.app_name = app_name or os.environ.get("THEORY_MODAL_APP", "").strip() or "theory"
        self.environment = environment
        self.connect_timeout = float(connect_timeout)
        self._functions: dict[str, Any] = {}
        self._client: Any = None  # our own modal.Client, created once by the first lookup
        self._lock = threading.Lock()  # guards the two dicts above
        self._client_lock = threading.Lock()  # held while the one client is created

    def close(self) -> None:
        """Close this adapter's client (its connections). Calls after this open a new one."""
        with self._client_lock:
            client, self._client = self._client, None
            with self._lock:
                self._functions.clear()
        if client is not None:
            client.close()

    def __enter__(self) -> ModalAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        if isinstance(exc, mx.FunctionTimeoutError):  # a subclass of mx.TimeoutError: test it first
            return ModalFunctionTimeoutError(
                f"Modal function '{function}' (app '{self.app_name}') ran past its {_timeout_of(function, str(exc))} "
                "timeout and was stopped: send less work per call, or raise the function's timeout and redeploy."
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

    def _shared_client(self):
        """The adapter's one client: the first caller creates it under the lock, the others wait and reuse it."""
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

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
                found = modal.Function.from_name(
                    self.app_name, function, environment_name=self.environment, client=self._shared_client()
                )
                found.hydrate()
                outcome.append(found)
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
        with self._lock:
            return self._functions.setdefault(function, outcome[0])

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
        gen = iter(fn.remote_gen(body))
        try:
            yield from gen
        except Exception as exc:
            translated = self._translate(exc, function)
            if translated is exc:
                raise
            raise translated from None
        finally:
            gen.close()  # now, in this thread: not at garbage collection

    def _map(self, function: str, bodies: list[dict[str, Any]], concurrency: int) -> Iterator[Any]:
        fn = self._function(function)
        # Modal scales out across containers; ``concurrency`` is a local-adapter knob only.
        results = iter(fn.map(bodies, return_exceptions=True, order_outputs=True))
        try:
            for result in results:
                # Per-item failures get the same one-line translation as single calls (a timeout is named as one).
                yield self._translate(result, function) if isinstance(result, BaseException) else result
        finally:
            results.close()  # a no-op once exhausted (the normal path: Adapter.map drains it)

    def _cancel(self, function_call_id: str) -> None:
        """Cancel the remote input of a stream its caller closed early: the container stops (and stops reading
        upstream) instead of running to the end for nobody."""
        import modal

        try:
            modal.FunctionCall.from_id(function_call_id, client=self._shared_client()).cancel()
        except Exception:  # noqa: BLE001 - best effort: the stream is closed either way
            pass
