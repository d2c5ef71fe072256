"""The plain lane (one model, nothing recording telemetry: no fallback chain, no telemetry call, no re-ask loop,
cached model checks) and the full path through :class:`providers.fallback.Chain` give identical outcomes.

Each case runs the same call twice against the loopback fake server: once as it runs by default (the plain
lane) and once with the lane switched off (``telemetry.idle`` reporting a recorder, so the chain runs; the
recorder is still the no-op call, so nothing else changes). A spy on ``Chain.__init__`` proves which lane each
side took. Outcomes compared: the reply (``to_dict``, latency aside) or the error's class, message (ports
masked), attempts, status, ``retry_after``, retryability, ``attempted``, and how it is chained (``__cause__``,
``__suppress_context__``: a chain re-raises a lone model's error ``from None``); and the requests the server got.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_spec import FAST, SCENARIOS, closed_port

from providers import ProviderError, fallback, get_llm_provider, telemetry

KEY = "sk-plainlane-000000000000"
PROMPT = "one two three four five six"
_PORT = re.compile(r"127\.0\.0\.1:\d+")
CALLS = ("chat", "achat")


@pytest.fixture
def telemetry_off(monkeypatch):
    """Telemetry as in a process that never set OpenTelemetry up (earlier tests in the run may have)."""
    monkeypatch.setattr(telemetry, "_otel", False)
    monkeypatch.setattr(telemetry._settings, "call_log", False)


@pytest.fixture
def lanes(monkeypatch, telemetry_off):
    """``run(lane, fn)``: call ``fn()`` on the "plain" lane or through the "chain"; counts chains built."""
    built = {"n": 0}
    real_init = fallback.Chain.__init__

    def counting_init(self, *a, **kw):
        built["n"] += 1
        real_init(self, *a, **kw)

    monkeypatch.setattr(fallback.Chain, "__init__", counting_init)
    real_idle = telemetry.idle

    def run(lane: str, fn):
        assert real_idle(), "the plain lane needs telemetry off (no opentelemetry.trace, no call log)"
        built["n"] = 0
        asked = []

        def idle() -> bool:
            asked.append(1)
            return real_idle() if lane == "plain" else False

        monkeypatch.setattr(telemetry, "idle", idle)
        try:
            return fn()
        finally:
            monkeypatch.setattr(telemetry, "idle", real_idle)
            # A model refused by the shared prefix (before the lane is chosen) takes neither lane.
            took = "chain" if built["n"] else "plain" if asked else "neither"
            assert took in (lane, "neither"), f"the {lane} side took the {took} lane"

    return run


def _outcome(llm: Any, call: str, prompt: Any, kw: dict[str, Any]) -> tuple[Any, ...]:
    try:
        if call == "chat":
            reply = llm.chat(prompt, **kw)
        else:
            reply = asyncio.run(llm.achat(prompt, **kw))
    except ProviderError as exc:
        return ("error", type(exc).__name__, _PORT.sub("127.0.0.1:<port>", exc.message), exc.attempts,
                getattr(exc, "status_code", None), getattr(exc, "retry_after", None), exc.retryable,
                getattr(exc, "attempted", None), exc.__cause__ is None, exc.__suppress_context__)
    d = reply.to_dict()
    d["usage"] = {k: v for k, v in d["usage"].items() if k != "latency_ms"}
    return ("reply", d)


def _both(lanes, server, make, call, prompt, kw, script=()):
    outs = []
    for lane in ("plain", "chain"):
        server.reset()
        if script:
            server.script(*script)
        llm = make()
        out = lanes(lane, lambda: _outcome(llm, call, prompt, kw))
        outs.append((out, [(r["path"], r["body"]) for r in server.requests]))
    server.reset()
    return outs


def _litellm(base: str, model: str = "openai/gpt-4o-mini", fast_path: bool = True, timeout: float = 5.0, **extra):
    return lambda: get_llm_provider("litellm", model_default=model, api_base=base, api_key=KEY, retry=FAST,
                                    timeout=timeout, fast_path=fast_path, **extra)


# ------------------------------------------------------------------------------------------ fault matrix
@pytest.mark.slow
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "litellm"])
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.id)
def test_every_fault_scenario_ends_identically_on_the_plain_lane_and_through_the_chain(
    sc, call, fast_path, fake_llm, lanes, no_provider_keys
):
    if sc.refused:
        base = f"http://127.0.0.1:{closed_port()}/v1"
    else:
        base = fake_llm.ollama_base if sc.ollama else fake_llm.openai_base
    extra = {"timeout": sc.timeout} if sc.timeout else {}
    (plain, plain_reqs), (chain, chain_reqs) = _both(lanes, fake_llm, _litellm(base, sc.model, fast_path, **extra),
                                                     call, PROMPT, {}, sc.script)
    assert plain == chain
    assert plain_reqs == chain_reqs
    expect = sc.expect_for(call)
    assert plain[0] == ("reply" if expect.error is None else "error")
    if expect.error is not None:
        assert plain[1] == expect.error.__name__ and plain[3] == expect.attempts


# ------------------------------------------------------------------------------------------ properties
_SCRIPTABLE = ["ok", "error-500", "error-502", "error-429-noretry", "error-400", "error-404", "reset",
               "malformed-json", "no-choices", "ctx-overflow"]
_OPTION_VALUES = {
    "temperature": st.one_of(st.floats(-1, 3), st.sampled_from(["hot", None, True, float("nan")])),
    "top_p": st.floats(0, 1, allow_nan=False),
    "max_tokens": st.one_of(st.integers(-2, 4096), st.just(2.5)),
    "seed": st.integers(-(2**31), 2**31 - 1),
    "stop": st.one_of(st.text(min_size=0, max_size=5), st.lists(st.text(min_size=1, max_size=5), max_size=3)),
    "system": st.text(max_size=40),
    "timeout": st.one_of(st.floats(0.5, 10), st.sampled_from([0, -1, float("inf"), "5"])),
    "colour": st.just("blue"),  # an unknown option
}
_MODELS = st.one_of(
    st.none(),
    st.sampled_from(["openai/gpt-4o", "openai/my-gateway-model", "gpt-4o-mini", "openai/error-404",
                     "nosuchprovider/x", "http://169.254.169.254/latest", "openai/../../etc", "", "openai/ gpt",
                     "ollama_chat/qwen2.5:0.5b"]),
    st.text(max_size=20),
)
_PROMPTS = st.one_of(st.text(max_size=60), st.sampled_from(["", "   ", None, 7, b"bytes"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    call=st.sampled_from(CALLS),
    fast_path=st.booleans(),
    prompt=_PROMPTS,
    model=_MODELS,
    options=st.fixed_dictionaries({}, optional=_OPTION_VALUES),
    script=st.lists(st.sampled_from(_SCRIPTABLE), max_size=3),
)
def test_random_calls_give_the_same_reply_or_the_same_error_on_both_lanes(
    call, fast_path, prompt, model, options, script, fake_llm, lanes, no_provider_keys
):
    """Invariant: for any prompt, model string (valid, invalid, hostile), options (valid or not) and upstream
    fault script, the plain lane and the chain return the same reply (latency aside) or raise the same error
    (class, message, attempts, chaining), after sending the same requests."""
    kw = dict(options)
    if model is not None:
        kw["model"] = model
    (plain, plain_reqs), (chain, chain_reqs) = _both(lanes, fake_llm, _litellm(fake_llm.openai_base, fast_path=fast_path),
                                                     call, prompt, kw, tuple(script))
    assert plain == chain
    assert plain_reqs == chain_reqs


_MOCK_OPTIONS = {
    "temperature": st.floats(0, 2, allow_nan=False),
    "max_tokens": st.integers(-1, 50),
    "system": st.text(max_size=20),
    "mock_error": st.sampled_from(["unavailable", "credentials", "model_not_found", "timeout", "invalid_request",
                                   "context_window_exceeded", "no_such_kind"]),
}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=st.sampled_from(CALLS), prompt=_PROMPTS, model=_MODELS,
       options=st.fixed_dictionaries({}, optional=_MOCK_OPTIONS))
def test_the_mock_gives_the_same_reply_or_error_on_both_lanes(call, prompt, model, options, lanes, fake_llm):
    """Invariant: the same for the mock provider (its own model grammar and its ``mock_error`` failures)."""
    kw = dict(options)
    if model is not None:
        kw["model"] = model
    (plain, _), (chain, _) = _both(lanes, fake_llm, lambda: get_llm_provider("mock"), call, prompt, kw)
    assert plain == chain


def test_a_provider_with_fallbacks_or_a_fallbacks_argument_always_takes_the_chain(fake_llm, lanes, no_provider_keys):
    """The lane is only for one model: fallbacks (configured or per call) still walk the chain."""
    llm = _litellm(fake_llm.openai_base, fallbacks=["openai/gpt-4o"])()
    with pytest.raises(AssertionError, match="took the chain lane"):
        lanes("plain", lambda: llm.chat(PROMPT))
    plain_llm = _litellm(fake_llm.openai_base)()
    with pytest.raises(AssertionError, match="took the chain lane"):
        lanes("plain", lambda: plain_llm.chat(PROMPT, fallbacks=["openai/gpt-4o"]))
    assert lanes("plain", lambda: plain_llm.chat(PROMPT, fallbacks=[])).text


def test_the_lane_is_off_while_telemetry_records(fake_llm, monkeypatch, no_provider_keys, telemetry_off):
    """With the call log on (something records calls), every call goes through the chain and is logged."""
    built = []
    real_init = fallback.Chain.__init__
    monkeypatch.setattr(fallback.Chain, "__init__", lambda self, *a, **k: (built.append(1), real_init(self, *a, **k))[1])
    llm = _litellm(fake_llm.openai_base)()
    llm.chat(PROMPT)
    assert built == []
    telemetry.configure(call_log=True)
    try:
        assert not telemetry.idle()
        llm.chat(PROMPT)
    finally:
        telemetry.configure(call_log=False)
    assert built == [1]
