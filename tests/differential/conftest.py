"""Fixtures of the differential suite: the reliability scenarios on the path, litellm loaded once, and a spy that
proves which path each side of a comparison really took."""

from __future__ import annotations

import os
import sys
from collections import Counter

import pytest

_HERE = os.path.dirname(__file__)
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "reliability"))


@pytest.fixture(scope="session")
def litellm_loaded():
    from providers.litellm_provider import load_litellm

    return load_litellm()


@pytest.fixture
def paths(monkeypatch, litellm_loaded):
    """Counts calls that went out through the fast path and through litellm itself."""
    from providers import openai_fast

    seen: Counter = Counter()
    real_sync, real_async = openai_fast.FastBackend.completion, openai_fast.FastBackend.acompletion
    real_lc, real_alc = litellm_loaded.completion, litellm_loaded.acompletion

    def fast_sync(self, **kw):
        seen["fast"] += 1
        return real_sync(self, **kw)

    async def fast_async(self, **kw):
        seen["fast"] += 1
        return await real_async(self, **kw)

    def lite_sync(*a, **kw):
        seen["litellm"] += 1
        return real_lc(*a, **kw)

    async def lite_async(*a, **kw):
        seen["litellm"] += 1
        return await real_alc(*a, **kw)

    monkeypatch.setattr(openai_fast.FastBackend, "completion", fast_sync)
    monkeypatch.setattr(openai_fast.FastBackend, "acompletion", fast_async)
    monkeypatch.setattr(litellm_loaded, "completion", lite_sync)
    monkeypatch.setattr(litellm_loaded, "acompletion", lite_async)
    monkeypatch.delenv("THEORY_MODAL_FAST_PATH", raising=False)
    return seen
