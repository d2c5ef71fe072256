"""Blob store for payloads over the inline limit, served over loopback HTTP like S3 presigned URLs.

The client offloads function arguments/results larger than 2 MiB (8 KiB for ``.spawn``), and mount files over
4 MiB, with ``BlobCreate`` + an HTTP ``PUT`` to the returned URL, and reads them with ``BlobGet`` + ``GET``.
"""

from __future__ import annotations

import hashlib
import logging

from aiohttp import web

from .ids import IdFactory

logger = logging.getLogger(__name__)


class BlobStore:
    """In-memory blobs plus a tiny aiohttp server answering ``PUT``/``GET /blobs/<blob_id>`` on 127.0.0.1."""

    def __init__(self, ids: IdFactory, host: str = "127.0.0.1") -> None:
        self._ids = ids
        self._host = host
        self._blobs: dict[str, bytes] = {}
        self._expected: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_put("/blobs/{blob_id}", self._put)
        app.router.add_get("/blobs/{blob_id}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._base_url = f"http://{self._host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def create(self) -> tuple[str, str]:
        """Reserve a blob id; return it with the URL the client must ``PUT`` the content to."""
        blob_id = self._ids.new("bl")
        self._expected.add(blob_id)
        return blob_id, f"{self._base_url}/blobs/{blob_id}"

    def download_url(self, blob_id: str) -> str:
        if blob_id not in self._blobs:
            raise KeyError(blob_id)
        return f"{self._base_url}/blobs/{blob_id}"

    def get(self, blob_id: str) -> bytes:
        return self._blobs[blob_id]

    async def _put(self, request: web.Request) -> web.Response:
        blob_id = request.match_info["blob_id"]
        if blob_id not in self._expected:
            return web.Response(status=404, text=f"unknown blob {blob_id}")
        data = await request.read()
        self._blobs[blob_id] = data
        logger.debug("blob %s stored (%d bytes)", blob_id, len(data))
        # The client checks the ETag against the MD5 of what it sent, like S3 single-part uploads.
        return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    async def _get(self, request: web.Request) -> web.Response:
        data = self._blobs.get(request.match_info["blob_id"])
        if data is None:
            return web.Response(status=404, text="no such blob")
        return web.Response(status=200, body=data)
