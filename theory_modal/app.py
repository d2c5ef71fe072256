"""The Modal app: one image, and one chat function plus one streaming function per processor.

Every function is a thin shell over :mod:`theory_modal.handlers`, generated from ``catalog.PROCESSORS``, so
adding a provider adds one registration, not a copy. Importing this module locally does not import litellm.

Deploy-time settings (read here at import, and baked into the image so containers compute the same values;
see shared/notes/modal.md §7):

- ``THEORY_MODAL_APP``: the app name (default ``theory``).
- ``THEORY_MODAL_ALLOWED_MODELS``: comma-separated glob patterns of the models the functions serve, e.g.
  ``openai/gpt-4o-mini,ollama_chat/*``; unset or empty serves any model the grammar accepts
  (:mod:`theory_modal.allowlist`).
- ``THEORY_MODAL_SECRETS``: comma-separated Modal Secret names attached to every function, e.g.
  ``openai-secret,anthropic-secret``. Empty by default: the mock and Ollama need no key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import modal

from theory_modal import handlers
from theory_modal.allowlist import ENV_VAR as ALLOWED_MODELS_ENV
from theory_modal.allowlist import allowed_patterns
from theory_modal.catalog import PROCESSORS, Processor, Serving

__all__ = ["app", "image", "APP_NAME", "ALLOWED_MODELS", "SECRET_NAMES", "FUNCTIONS", "LITELLM_REQUIREMENT"]

APP_NAME = os.environ.get("THEORY_MODAL_APP", "theory").strip() or "theory"
#: The deployment's model allow-list, as read at deploy time (containers see the same value in their env).
ALLOWED_MODELS: tuple[str, ...] = allowed_patterns()
SECRET_NAMES: tuple[str, ...] = tuple(
    n.strip() for n in os.environ.get("THEORY_MODAL_SECRETS", "").split(",") if n.strip()
)
#: Same pin as pyproject.toml (a test keeps the two equal).
LITELLM_REQUIREMENT = "litellm==1.110.2"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(LITELLM_REQUIREMENT)
    .env(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price-map fetch at import ("1" is not honoured)
            "LITELLM_OFFLINE_MODE": "true",  # no Hugging Face tokenizer download stalling the first stream
            "THEORY_MODAL_APP": APP_NAME,
            "THEORY_MODAL_SECRETS": ",".join(SECRET_NAMES),
            ALLOWED_MODELS_ENV: ",".join(ALLOWED_MODELS),
        }
    )
    # Last, so source edits do not rebuild the layers above; without it containers fail with ModuleNotFoundError.
    .add_local_python_source("providers", "theory_modal")
)

app = modal.App(APP_NAME, image=image)

#: Settings every function shares; per-processor ones (timeout, max_inputs) come from the catalogue.
#: ``enable_memory_snapshot``: litellm (~3 s to import) is imported before the snapshot (below), so a
#: restored container starts with it loaded.
COMMON: dict[str, Any] = {
    "enable_memory_snapshot": True,
    "scaledown_window": 120,  # keep a warm container two minutes after the last input
    "secrets": [modal.Secret.from_name(name) for name in SECRET_NAMES],
}

if not modal.is_local():  # inside a container, at import: before the memory snapshot is taken
    from providers.litellm_provider import load_litellm

    load_litellm()


def _chat_body(p: Processor) -> Callable[[dict], dict]:
    ref, provider = p.ref, p.provider

    def chat(payload: dict) -> dict:
        return handlers.run_chat(ref, provider, payload)

    return chat


def _stream_body(p: Processor) -> Callable[[dict], Iterator[Any]]:
    ref, provider = p.ref, p.provider

    def stream(payload: dict) -> Iterator[Any]:
        yield from handlers.run_stream(ref, provider, payload)

    return stream


def _register(name: str, body: Callable, serving: Serving) -> modal.Function:
    # Containers find a function by getattr(module, __qualname__), so each one is a module global by that name.
    body.__name__ = body.__qualname__ = name
    body.__module__ = __name__
    fn = app.function(timeout=serving.timeout, **COMMON)(modal.concurrent(max_inputs=serving.max_inputs)(body))
    globals()[name] = fn
    return fn


#: Function name -> Modal function, e.g. ``mock_chat``, ``mock_stream``, ``litellm_chat``, ``litellm_stream``.
FUNCTIONS: dict[str, modal.Function] = {}
for _p in PROCESSORS:
    FUNCTIONS[_p.chat_function] = _register(_p.chat_function, _chat_body(_p), _p.serving)
    FUNCTIONS[_p.stream_function] = _register(_p.stream_function, _stream_body(_p), _p.serving)
del _p
