"""The in-process adapter: the Modal function objects' ``.local()``. No network, no Modal token."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from theory_modal.adapters.base import Adapter

__all__ = ["LocalAdapter"]


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
