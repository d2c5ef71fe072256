"""Structural guards on what ``import providers`` and a mock chat load (a cold start is mostly imports).

These check module sets in a fresh subprocess, never timings: a module that reappears here costs every CLI
run, batch worker and container start its import time (bench item 6 measures the time itself)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Never loaded by ``import providers`` nor by a mock chat: the SDKs (seconds), and what only other paths need
#: (asyncio: async calls and the retry loop; logging: log redaction and the call log; the attachment reader's
#: hashing, base64 and MIME tables; the HTTP stack; structured-output validation).
HEAVY = (
    "litellm", "opentelemetry", "modal", "openai", "httpx", "httpcore", "pydantic", "jsonschema", "click",
    "asyncio", "ssl", "logging", "mimetypes", "base64",
)


#: Never loaded by building (not using) a LiteLLM provider: that module needs asyncio and logging itself.
SDKS = ("litellm", "opentelemetry", "modal", "openai", "httpx", "pydantic", "jsonschema")


def _loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``heavy`` packages (or any of their submodules) in ``sys.modules`` after running ``code`` in a fresh
    interpreter."""
    probe = (
        "import json, sys\n" + code + "\n"
        f"heavy = {heavy!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_import_providers_loads_only_the_package_face():
    """``import providers`` runs the face alone: every public name loads its module on first access."""
    code = "import providers\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('providers.'))))"
    out = subprocess.run([sys.executable, "-c", "import json, sys\n" + code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(
    "code",
    [
        "import providers",
        "import providers; providers.get_llm_provider('mock').chat('Hello')",
        "from providers import get_llm_provider, LLMReply, ProviderError, Attachment\n"
        "s = get_llm_provider('mock').stream_chat('Hello one two'); assert ''.join(s) == 'mock reply to: Hello one two'",
    ],
    ids=["import", "mock-chat", "mock-stream"],
)
def test_heavy_modules_stay_unloaded(code):
    """The invariant behind the cold-start target: none of HEAVY is imported on these paths."""
    assert _loaded_after(code) == []


def test_building_a_litellm_provider_loads_no_sdk():
    """Building the LiteLLM provider (smoke or live) loads none of the SDKs: they load on the first call."""
    code = "import providers; providers.get_llm_provider('litellm', smoke=True); providers.get_llm_provider('litellm')"
    assert _loaded_after(code, SDKS) == []


def test_every_public_name_resolves_and_is_listed():
    """The lazy face still exports exactly ``__all__``, each name the object its module defines."""
    import importlib

    import providers

    for name in providers.__all__:
        value = getattr(providers, name)
        assert value is getattr(importlib.import_module(providers._EXPORTS[name]), name)
    assert set(providers.__all__) <= set(dir(providers))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        providers.nope  # noqa: B018


def test_the_lazy_paths_still_load_what_they_need():
    """Laziness must not break the paths that do need the modules: an async mock call (asyncio), log redaction
    (logging) and an attachment (base64, hashlib) all work in a fresh process."""
    code = (
        "import asyncio, logging, providers\n"
        "from providers.redact import install_log_redaction\n"
        "from providers import Attachment, get_llm_provider\n"
        "install_log_redaction('x.y')\n"
        "assert logging.getLogger('x.y').filters\n"
        "a = Attachment.from_bytes(b'hello', 'text/plain', name='a.txt')\n"
        "assert Attachment.from_dict(a.to_dict()) == a and len(a.sha256) == 64 and a.data_url().startswith('data:')\n"
        "p = get_llm_provider('mock', latency_ms=1)\n"
        "print(asyncio.run(p.achat('Hello')).text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "mock reply to: Hello"
