"""The Modal app: two images (locked), and each function written out with ``def``.

Every function is a thin shell over the async bodies in :mod:`theory_modal.handlers`; serving settings come
from the catalogue (:mod:`theory_modal.catalog`). Importing this module locally does not import litellm.

Images:

- ``litellm_image`` installs from ``requirements/litellm-image.lock``: every transitive package pinned with
  sha256 hashes (``pip install --require-hashes --no-deps``; the lock is ``requirements.lock`` filtered to what
  litellm, our own imports and the ``otel`` extra need, modal excluded: Modal provides its client in every
  container).
- ``mock_image`` has no litellm at all: mock containers start and snapshot without it. It installs
  ``requirements/mock-image.lock``: our runtime dependencies (``jsonschema`` validates structured output and tool
  arguments) and the ``otel`` extra (the OpenTelemetry SDK and OTLP/HTTP exporter), hash-locked the same way.
- Both can send their spans to an OTLP collector when the standard ``OTEL_EXPORTER_OTLP_*`` variables reach the
  container (a Modal Secret in ``THEORY_MODAL_SECRETS``); without them nothing is exported and nothing is set up.
- Both mount only our Python sources, and never ``theory_modal/testing`` (emulator, fake server).

Deploy-time settings (read here at import, and baked into the images so containers compute the same values:
a container re-imports this file, and any Modal object chosen from local-only state would differ there):

- ``THEORY_MODAL_APP``: the app name (default ``theory``).
- ``THEORY_MODAL_ALLOWED_MODELS``: comma-separated glob patterns of the models the functions serve, e.g.
  ``openai/gpt-4o-mini,ollama_chat/*``; unset or empty serves any model the grammar accepts
  (:mod:`theory_modal.allowlist`).
- ``THEORY_MODAL_SECRETS``: comma-separated Modal Secret names attached to every function, e.g.
  ``openai-secret,anthropic-secret``. Empty by default: the mock and Ollama need no key.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import modal

from theory_modal import handlers
from theory_modal.allowlist import ENV_VAR as ALLOWED_MODELS_ENV
from theory_modal.allowlist import allowed_patterns
from theory_modal.catalog import processor_for

__all__ = [
    "app",
    "litellm_image",
    "mock_image",
    "APP_NAME",
    "ALLOWED_MODELS",
    "SECRET_NAMES",
    "FUNCTIONS",
    "LITELLM_LOCK",
    "MOCK_LOCK",
    "SOURCE_IGNORE",
    "mock_chat",
    "mock_stream",
    "litellm_chat",
    "litellm_stream",
]

APP_NAME = os.environ.get("THEORY_MODAL_APP", "theory").strip() or "theory"
#: The deployment's model allow-list, as read at deploy time (containers see the same value in their env).
ALLOWED_MODELS: tuple[str, ...] = allowed_patterns()
SECRET_NAMES: tuple[str, ...] = tuple(
    n.strip() for n in os.environ.get("THEORY_MODAL_SECRETS", "").split(",") if n.strip()
)
#: The hash-locked requirements of the LiteLLM image. Read only when Modal builds the image (deploy time,
#: locally); a container never needs the file.
LITELLM_LOCK = Path(__file__).resolve().parent.parent / "requirements" / "litellm-image.lock"
#: The mock image's hash-locked packages: our runtime dependencies and the OpenTelemetry export packages (the
#: LiteLLM image's lock holds all of them too).
MOCK_LOCK = Path(__file__).resolve().parent.parent / "requirements" / "mock-image.lock"


def SOURCE_IGNORE(path: Path) -> bool:
    """Mount Python files only, and nothing under ``testing/``: test tools never ship to production."""
    return path.suffix != ".py" or "testing" in path.parts


_ENV = {
    "THEORY_MODAL_APP": APP_NAME,
    "THEORY_MODAL_SECRETS": ",".join(SECRET_NAMES),
    ALLOWED_MODELS_ENV: ",".join(ALLOWED_MODELS),
}

mock_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install_from_requirements(str(MOCK_LOCK), extra_options="--require-hashes --no-deps")
    .env({"THEORY_MODAL_IMAGE": "mock", **_ENV})
    # Last, so source edits do not rebuild the layers above; without it containers fail with ModuleNotFoundError.
    .add_local_python_source("providers", "theory_modal", ignore=SOURCE_IGNORE)
)

litellm_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install_from_requirements(str(LITELLM_LOCK), extra_options="--require-hashes --no-deps")
    .env(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price-map fetch at import ("1" is not honoured)
            "LITELLM_OFFLINE_MODE": "true",  # no Hugging Face tokenizer download stalling the first stream
            "THEORY_MODAL_IMAGE": "litellm",
            **_ENV,
        }
    )
    .add_local_python_source("providers", "theory_modal", ignore=SOURCE_IGNORE)
)

app = modal.App(APP_NAME)

#: Settings every function shares; per-processor ones (timeout, max_inputs) come from the catalogue.
#: ``enable_memory_snapshot``: what is imported before the snapshot (litellm, below) is restored loaded.
COMMON: dict[str, Any] = {
    "enable_memory_snapshot": True,
    "scaledown_window": 120,  # keep a warm container two minutes after the last input
    "secrets": [modal.Secret.from_name(name) for name in SECRET_NAMES],
}

MOCK = processor_for("mock")
LITELLM = processor_for("litellm")


def warm_litellm() -> None:
    """Import litellm and load its tokenizer, so a restored container starts with both in memory.

    Runs before the memory snapshot: it must leave no thread, socket or random state behind (litellm's
    offline settings above keep it off the network).
    """
    from providers.litellm_provider import load_litellm

    load_litellm().token_counter(model="gpt-4o-mini", text="warm up the tokenizer")


# Inside a LiteLLM container, at import: before the memory snapshot is taken. The image says which one it is.
if not modal.is_local() and os.environ.get("THEORY_MODAL_IMAGE") == "litellm":
    warm_litellm()


# ---------------------------------------------------------------------------------------------- mock
@app.function(image=mock_image, timeout=MOCK.serving.timeout, **COMMON)
@modal.concurrent(max_inputs=MOCK.serving.max_inputs)
async def mock_chat(payload: dict) -> dict:
    return await handlers.chat(MOCK.ref, MOCK.provider, payload)


@app.function(image=mock_image, timeout=MOCK.serving.timeout, **COMMON)
@modal.concurrent(max_inputs=MOCK.serving.max_inputs)
async def mock_stream(payload: dict) -> AsyncIterator[dict]:
    async with aclosing(handlers.stream(MOCK.ref, MOCK.provider, payload)) as events:  # closing this closes it
        async for event in events:
            yield event


# ---------------------------------------------------------------------------------------------- litellm
@app.function(image=litellm_image, timeout=LITELLM.serving.timeout, **COMMON)
@modal.concurrent(max_inputs=LITELLM.serving.max_inputs)
async def litellm_chat(payload: dict) -> dict:
    return await handlers.chat(LITELLM.ref, LITELLM.provider, payload)


@app.function(image=litellm_image, timeout=LITELLM.serving.timeout, **COMMON)
@modal.concurrent(max_inputs=LITELLM.serving.max_inputs)
async def litellm_stream(payload: dict) -> AsyncIterator[dict]:
    async with aclosing(handlers.stream(LITELLM.ref, LITELLM.provider, payload)) as events:  # closing this closes it
        async for event in events:
            yield event


#: Function name -> Modal function. A test checks it names exactly the catalogue's functions.
FUNCTIONS: dict[str, modal.Function] = {
    "mock_chat": mock_chat,
    "mock_stream": mock_stream,
    "litellm_chat": litellm_chat,
    "litellm_stream": litellm_stream,
}
