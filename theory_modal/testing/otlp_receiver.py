"""A loopback OTLP/HTTP collector for tests: it decodes what an exporter sends and keeps it for assertions.

Listens on 127.0.0.1 (an ephemeral port), accepts ``POST /v1/traces`` and ``POST /v1/metrics`` with protobuf
bodies (gzip or deflate as well), decodes them with ``opentelemetry-proto`` (installed with the OTLP exporter,
``theory-modal[otel]``) and records every request: path, headers, decoded message. ``status`` makes it answer
with an error instead (to test an exporter's failure path)::

    with OtlpReceiver() as collector:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.endpoint
        ...
        [span] = collector.wait_for_spans(lambda s: s["name"] == "chat mock")
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OtlpReceiver", "Received"]


@dataclass
class Received:
    """One export request as the collector saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    message: Any = None  # ExportTraceServiceRequest / ExportMetricsServiceRequest, or None if undecodable
    error: str | None = None


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


@dataclass
class OtlpReceiver:
    """The collector; use as a context manager (or :meth:`start` / :meth:`stop`)."""

    status: int = 200
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        #: Clear it to make the collector hold every answer (a hung collector) until it is set again.
        self.answering = threading.Event()
        self.answering.set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                receiver.answering.wait(60)
                status = receiver.status
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="otlp-receiver", daemon=True)  # stop() waits one poll at most
        self._thread.start()
        return self

    def stop(self) -> None:
        self.answering.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporters append ``/v1/traces`` etc.)."""
        assert self._server is not None, "start() the receiver first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ decoding
    def _record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        item = Received(path=path, headers=headers, body=body)
        try:
            raw = body
            encoding = headers.get("content-encoding", "")
            if encoding == "gzip":
                raw = gzip.decompress(body)
            elif encoding == "deflate":
                raw = zlib.decompress(body)
            if path.endswith("/v1/traces"):
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

                item.message = ExportTraceServiceRequest.FromString(raw)
            elif path.endswith("/v1/metrics"):
                from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

                item.message = ExportMetricsServiceRequest.FromString(raw)
        except Exception as exc:  # noqa: BLE001 - kept for the test to report
            item.error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.received.append(item)

    def requests(self, path_suffix: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path.endswith(path_suffix)]

    def spans(self) -> list[dict[str, Any]]:
        """Every received span as a plain dict: ``name``, ``trace_id``/``span_id``/``parent_span_id`` (hex),
        ``kind`` (int), ``attributes``, ``events`` (name + attributes), ``status_code`` (int), ``resource``."""
        out = []
        for item in self.requests("/v1/traces"):
            if item.message is None:
                continue
            for rs in item.message.resource_spans:
                resource = _attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append({
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "scope": ss.scope.name,
                            "attributes": _attributes(span.attributes),
                            "events": [{"name": e.name, "attributes": _attributes(e.attributes)} for e in span.events],
                            "status_code": span.status.code,
                            "status_message": span.status.message,
                            "resource": resource,
                        })
        return out

    def metric_names(self) -> set[str]:
        names = set()
        for item in self.requests("/v1/metrics"):
            if item.message is None:
                continue
            for rm in item.message.resource_metrics:
                for sm in rm.scope_metrics:
                    names.update(m.name for m in sm.metrics)
        return names

    def wait_for_spans(self, predicate: Callable[[dict[str, Any]], bool] = lambda s: True, want: int = 1,
                       timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The received spans matching ``predicate``, once there are ``want`` of them (or at the timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [s for s in self.spans() if predicate(s)]
            if len(found) >= want or time.monotonic() > deadline:
                return found
            time.sleep(0.02)
