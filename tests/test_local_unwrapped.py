"""The local adapter calls modal's ``Function.local`` on the object behind the synchronicity wrapper (the same
method, without the per-attribute proxying). Differential: the public ``fn.local`` and the unwrapped one give
the same results, events and errors on the same inputs."""

from __future__ import annotations

import asyncio
import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory_modal.adapters import LocalAdapter
from theory_modal.adapters import local as local_mod
from theory_modal.app import FUNCTIONS


def _outcome(coro_fn, body):
    try:
        return ("ok", asyncio.run(coro_fn(body)))
    except Exception as exc:  # noqa: BLE001 - class and text are compared
        return ("error", type(exc).__name__, str(exc))


def _events(agen_fn, body):
    async def collect():
        out = []
        try:
            async for event in agen_fn(body):
                out.append(event)
        except Exception as exc:  # noqa: BLE001
            out.append(("error", type(exc).__name__, str(exc)))
        return out

    return asyncio.run(collect())


payloads = st.fixed_dictionaries(
    {"prompt": st.one_of(st.text(max_size=40), st.just(""), st.integers())},
    optional={
        "mode": st.sampled_from(["smoke", "live", "bogus"]),
        "model": st.sampled_from(["mock", "mock-2", "", "bad model!"]),
        "options": st.fixed_dictionaries({}, optional={
            "temperature": st.one_of(st.floats(-1, 3), st.text(max_size=3)),
            "mock_error": st.sampled_from(["rate_limited", "timeout", "nope"]),
        }),
        "extra": st.integers(),
    },
)


@settings(max_examples=80, deadline=None)
@given(body=payloads)
def test_unwrapped_local_gives_what_fn_local_gives_on_the_same_inputs(body):
    """Same Response dict, or the same error class and message, for any payload (valid or not)."""
    fn = FUNCTIONS["mock_chat"]
    assert _outcome(local_mod._unwrapped_local(fn), body) == _outcome(fn.local, body)


@settings(max_examples=40, deadline=None)
@given(body=payloads)
def test_unwrapped_local_streams_the_same_events(body):
    """Same stream events (start, deltas, done), or the same error, as the public ``fn.local``."""
    fn = FUNCTIONS["mock_stream"]
    assert _events(local_mod._unwrapped_local(fn), body) == _events(fn.local, body)


def test_it_is_modals_own_local_bound_to_the_object_behind_the_wrapper():
    """Not a copy of the function body: ``_Function.local`` of the object the public Function forwards to."""
    from modal._functions import _Function
    from modal._utils.async_utils import synchronizer

    fn = FUNCTIONS["litellm_chat"]
    local = local_mod._unwrapped_local(fn)
    assert isinstance(local, functools.partial) and local.func is _Function.local
    assert local.args == (synchronizer._translate_in(fn),) and isinstance(local.args[0], _Function)


def test_falls_back_to_the_public_local_when_modal_internals_move(monkeypatch):
    import modal._functions

    monkeypatch.delattr(modal._functions, "_Function")  # as if a release renamed it
    fn = FUNCTIONS["mock_chat"]
    local = local_mod._unwrapped_local(fn)
    assert local == fn.local
    assert asyncio.run(local({"prompt": "x", "mode": "smoke"}))["text"] == "mock reply to: x"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_the_adapter_uses_the_unwrapped_local_for_every_function(function):
    adapter = LocalAdapter()
    local = adapter._local(function)
    assert local is adapter._local(function)  # computed once
    assert isinstance(local, functools.partial) and local.keywords == {}
