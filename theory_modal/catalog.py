"""The catalogue of processors: ref (``llm/litellm@1``) -> provider, Modal function names, serving settings.

A ref is ``<kind>/<name>@<version>``; without ``@<version>`` it means the latest version. A new provider is
one entry in :data:`PROCESSORS` (plus its registration in ``providers``); ``theory_modal.app`` writes its
functions out and reads their serving settings from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from providers.errors import InvalidRequestError

__all__ = [
    "Processor",
    "PROCESSORS",
    "ProcessorRefError",
    "Serving",
    "known_refs",
    "processor_for",
    "resolve",
]

_REF = re.compile(r"^(?P<kind>[a-z][a-z0-9_-]*)/(?P<name>[a-z][a-z0-9_-]*)(?:@(?P<version>[0-9]+))?$")


class ProcessorRefError(InvalidRequestError):
    """An unknown or malformed processor ref."""

    kind = "unknown_ref"


@dataclass(frozen=True, slots=True)
class Serving:
    """How Modal serves one processor's functions.

    - ``timeout`` (s, per input): above the provider's worst case. LiteLLM's per-attempt timeout 60 s within a
      120 s retry budget can end at ~180 s; the mock answers at once.
    - ``max_inputs``: provider calls are I/O-bound (waiting on HTTP), so one container serves many at once.
      The mock is pure CPU work of microseconds.
    - No Modal ``retries``: the provider's own loop retries transient errors; a Modal retry would re-run that
      whole loop. Generators cannot have retries anyway.
    """

    timeout: int
    max_inputs: int


@dataclass(frozen=True, slots=True)
class Processor:
    """One versioned unit of work, run by the Modal functions ``<provider>_chat`` / ``<provider>_stream``."""

    kind: str
    name: str
    version: int
    provider: str  # registry name in providers.get_llm_provider
    description: str
    serving: Serving

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}@{self.version}"

    @property
    def chat_function(self) -> str:
        return f"{self.provider}_chat"

    @property
    def stream_function(self) -> str:
        return f"{self.provider}_stream"


#: Every processor this package serves. A new provider adds one entry here (and one registration in providers).
PROCESSORS: tuple[Processor, ...] = (
    Processor("llm", "mock", 1, "mock", "deterministic mock replies; free; no network",
              Serving(timeout=60, max_inputs=100)),
    Processor("llm", "litellm", 1, "litellm", "OpenAI, Ollama, Anthropic, ... through LiteLLM",
              Serving(timeout=300, max_inputs=32)),
)


def known_refs() -> list[str]:
    return sorted(p.ref for p in PROCESSORS)


def resolve(ref: object) -> Processor:
    """``llm/litellm@1`` or ``llm/litellm`` (latest) -> Processor; anything else fails listing the known refs.

    Every call of every adapter resolves its ref, so a ref that resolved once is answered from a small cache
    (failures are not cached: they raise, and their message lists the known refs)."""
    if isinstance(ref, str):
        return _resolve_str(ref)
    raise ProcessorRefError(
        f"malformed processor ref {ref!r}: expected <kind>/<name>[@<version>]; known refs: {', '.join(known_refs())}"
    )


@lru_cache(maxsize=64)
def _resolve_str(ref: str) -> Processor:
    m = _REF.match(ref.strip())
    if m is None:
        raise ProcessorRefError(
            f"malformed processor ref {ref!r}: expected <kind>/<name>[@<version>]; known refs: {', '.join(known_refs())}"
        )
    candidates = [p for p in PROCESSORS if p.kind == m["kind"] and p.name == m["name"]]
    if m["version"] is not None:
        candidates = [p for p in candidates if p.version == int(m["version"])]
    if not candidates:
        raise ProcessorRefError(f"unknown processor ref {ref!r}; known refs: {', '.join(known_refs())}")
    return max(candidates, key=lambda p: p.version)


def processor_for(provider: str) -> Processor:
    """The latest processor run by ``provider`` (the Modal functions are named after the provider)."""
    found = [p for p in PROCESSORS if p.provider == provider]
    if not found:
        raise KeyError(f"no processor for provider {provider!r}; providers: {sorted({p.provider for p in PROCESSORS})}")
    return max(found, key=lambda p: p.version)
