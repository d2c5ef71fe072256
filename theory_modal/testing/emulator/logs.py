"""Per-app container output, served to ``modal run`` (and ``modal app logs``) through ``AppGetLogs``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from modal_proto import api_pb2

from .ids import Signal

MAX_ENTRIES_PER_APP = 50_000
LOG_POLL_CAP_SECS = 55.0


@dataclass
class _AppLog:
    entries: list[api_pb2.TaskLogsBatch] = field(default_factory=list)
    offset: int = 0  # number of entries dropped from the front (entry ids stay monotonic)
    done: bool = False
    signal: Signal = field(default_factory=Signal)

    @property
    def last_entry_id(self) -> int:
        return self.offset + len(self.entries)


def _parse_entry_id(entry_id: str) -> int:
    try:
        return int((entry_id or "0").split("-")[0])
    except ValueError:
        return 0


class LogBook:
    """Append-only log per app. Entry ids are ``"1"``, ``"2"``, ...; ``app_done`` is sent once the app stopped."""

    def __init__(self) -> None:
        self._apps: dict[str, _AppLog] = {}

    def _log(self, app_id: str) -> _AppLog:
        return self._apps.setdefault(app_id, _AppLog())

    def append(self, app_id: str, task_id: str, function_id: str, fd: int, data: str) -> None:
        log = self._log(app_id)
        entry = api_pb2.TaskLogsBatch(
            task_id=task_id,
            function_id=function_id,
            entry_id=str(log.last_entry_id + 1),
            items=[api_pb2.TaskLogs(data=data, file_descriptor=fd, timestamp=time.time())],  # type: ignore[arg-type]
        )
        log.entries.append(entry)
        if len(log.entries) > MAX_ENTRIES_PER_APP:
            drop = len(log.entries) - MAX_ENTRIES_PER_APP
            del log.entries[:drop]
            log.offset += drop
        log.signal.notify()

    def mark_done(self, app_id: str) -> None:
        log = self._log(app_id)
        log.done = True
        log.signal.notify()

    def text(self, app_id: str) -> str:
        """All retained output of an app's containers, stdout and stderr interleaved."""
        return "".join(item.data for entry in self._log(app_id).entries for item in entry.items)

    def fetch(self, request: api_pb2.AppFetchLogsRequest) -> api_pb2.AppFetchLogsResponse:
        """Answer ``AppFetchLogs`` (``modal app logs``): the newest ``limit`` entries in the time range."""
        since = request.since.ToSeconds() if request.HasField("since") else 0.0
        until = request.until.ToSeconds() if request.HasField("until") else float("inf")
        entries = [
            entry
            for entry in self._log(request.app_id).entries
            if since <= entry.items[0].timestamp <= until
            and (not request.task_id or entry.task_id == request.task_id)
            and (not request.function_id or entry.function_id == request.function_id)
            and (not request.search_text or request.search_text in entry.items[0].data)
        ]
        if request.limit:
            entries = entries[-request.limit :]
        return api_pb2.AppFetchLogsResponse(batches=entries)

    async def stream(self, request: api_pb2.AppGetLogsRequest) -> AsyncIterator[api_pb2.TaskLogsBatch]:
        """Answer one ``AppGetLogs`` long-poll: new entries, else ``app_done``, else nothing after the timeout."""
        log = self._log(request.app_id)
        start = _parse_entry_id(request.last_entry_id)
        loop_deadline = time.monotonic() + min(max(request.timeout, 0.0), LOG_POLL_CAP_SECS)
        while True:
            new = [
                entry
                for entry in log.entries[max(start - log.offset, 0) :]
                if (not request.task_id or entry.task_id == request.task_id)
                and (not request.function_id or entry.function_id == request.function_id)
            ]
            start = log.last_entry_id
            if new:
                for entry in new:
                    yield entry
                return
            if log.done:
                yield api_pb2.TaskLogsBatch(app_done=True, entry_id=str(log.last_entry_id))
                return
            remaining = loop_deadline - time.monotonic()
            if remaining <= 0:
                return
            await log.signal.wait(remaining)
