"""Adapters: one interface to run processors in-process (``local``) or on Modal (``modal``).

One module per way of running a processor, behind one small base class (``base.Adapter``):

- ``local.LocalAdapter``: the very same Modal function objects through ``.local()``; no network, no token.
- ``modal.ModalAdapter``: ``Function.from_name(app, fn)`` with ``.remote`` / ``.remote_gen`` / ``.map``.
- ``provider.AdapterProvider``: the ``LLMProvider`` contract on top of either.
"""

from __future__ import annotations

from typing import Any

from providers.errors import InvalidRequestError
from theory_modal.adapters.base import Adapter, AdapterError, RunStream
from theory_modal.adapters.local import LocalAdapter
from theory_modal.adapters.modal import (
    ModalAdapter,
    ModalCredentialsError,
    ModalFunctionTimeoutError,
    ModalNotDeployedError,
    ModalUnreachableError,
)
from theory_modal.adapters.provider import AdapterProvider
from theory_modal.wire import error_dict

__all__ = [
    "Adapter",
    "AdapterProvider",
    "LocalAdapter",
    "ModalAdapter",
    "RunStream",
    "AdapterError",
    "ModalCredentialsError",
    "ModalFunctionTimeoutError",
    "ModalNotDeployedError",
    "ModalUnreachableError",
    "get_adapter",
    "error_dict",
    "ADAPTERS",
]

ADAPTERS = ("local", "modal")


def get_adapter(name: str, **config: Any) -> Adapter:
    if name == "local":
        return LocalAdapter()
    if name == "modal":
        return ModalAdapter(**config)
    raise InvalidRequestError(f"unknown adapter {name!r}; choose one of: {', '.join(ADAPTERS)}")
