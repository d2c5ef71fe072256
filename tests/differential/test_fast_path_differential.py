"""The fast path (openai SDK) and plain LiteLLM give identical outcomes: same replies (latency aside), same
chunks, same error classes, messages and attempt counts, and the same requests on the wire.

Every case runs twice against the loopback fake server, once per path; ``assert_same`` also proves each side
took the path it claims (a fast side that fell back to LiteLLM would compare LiteLLM with itself).
"""

from __future__ import annotations

import asyncio

import pytest
from harness import CALLS, assert_same, both, run_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_spec import FAST, SCENARIOS, closed_port

from contract import ProviderContract
from providers import Attachment, get_llm_provider

KEY = "sk-differential-0000000000"
PROMPT = "one two three four five six"


def kw(base: str, model: str = "openai/gpt-4o-mini", **extra):
    return {"model_default": model, "api_base": base, "api_key": KEY, "retry": FAST, "timeout": 5.0, **extra}


# ------------------------------------------------------------------------------------------ fault matrix
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.id)
def test_every_fault_scenario_ends_identically_on_both_paths(sc, call, fake_llm, paths, no_provider_keys):
    if sc.refused:
        base = f"http://127.0.0.1:{closed_port()}/v1"
    else:
        base = fake_llm.ollama_base if sc.ollama else fake_llm.openai_base
    fast, lite = both(call, fake_llm, paths, script=sc.script, prompt=PROMPT,
                      provider_kw=kw(base, sc.model, **({"timeout": sc.timeout} if sc.timeout else {})))
    assert_same(fast, lite, expect_fast=not sc.ollama)  # Ollama's native API stays on LiteLLM
    expect = sc.expect_for(call)
    if expect.error is None:
        assert fast.error is None and fast.reply is not None
    else:
        assert fast.error is not None and fast.error[0] == expect.error.__name__ and fast.error[2] == expect.attempts


# ------------------------------------------------------------------------------------------ contract cases
OPTIONS = [
    {},
    {"temperature": 0.2, "max_tokens": 50},
    {"top_p": 0.5, "seed": 7, "stop": ["\n\n", "END"]},
    {"presence_penalty": 0.1, "frequency_penalty": -0.3, "stop": "x"},
    {"system": "You are terse."},
    {"response_format": {"type": "json_object"}},
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "none")
def test_replies_usage_cost_and_requests_match_for_every_option(options, call, fake_llm, paths, no_provider_keys):
    fast, lite = both(call, fake_llm, paths, prompt=PROMPT, provider_kw=kw(fake_llm.openai_base), call_kw=options)
    assert_same(fast, lite)
    assert fast.reply is not None and fast.reply["usage"]["usd_micros"] is not None  # gpt-4o-mini has a price


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("model", ["openai/gpt-4o", "openai/my-gateway-model", "gpt-4o-mini"])
def test_priced_unpriced_and_bare_models_match(model, call, fake_llm, paths, no_provider_keys):
    fast, lite = both(call, fake_llm, paths, prompt=PROMPT, provider_kw=kw(fake_llm.openai_base, model))
    assert_same(fast, lite)


@pytest.mark.parametrize("call", CALLS)
def test_attachments_text_and_image_match(call, fake_llm, paths, no_provider_keys):
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000" "1f15c4890000000d49444154789c"
                        "6360000002000154a24f5f0000000049454e44ae426082")
    atts = [Attachment.from_bytes(b"notes: alpha beta", name="notes.txt"),
            Attachment.from_bytes(png, name="dot.png")]
    fast, lite = both(call, fake_llm, paths, prompt=PROMPT, provider_kw=kw(fake_llm.openai_base),
                      call_kw={"attachments": atts})
    assert_same(fast, lite)
    assert fast.requests and isinstance(fast.requests[0][1]["messages"][-1]["content"], list)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("scenario", ["ctx-overflow", "error-400", "error-401", "error-403", "error-404",
                                      "error-413", "error-422", "error-503-ra0", "error-504"])
def test_http_errors_map_identically(scenario, call, fake_llm, paths, no_provider_keys):
    fast, lite = both(call, fake_llm, paths, prompt=PROMPT, provider_kw=kw(fake_llm.openai_base),
                      script=(scenario,) * 3)
    assert_same(fast, lite)
    assert fast.error is not None


def test_wrong_key_is_rejected_identically(paths, no_provider_keys):
    from theory_modal.testing.fake_llm import FakeLLMServer

    with FakeLLMServer(require_key="sk-the-right-one-000") as srv:
        for call in CALLS:
            fast, lite = both(call, srv, paths, prompt=PROMPT, provider_kw=kw(srv.openai_base))
            assert_same(fast, lite)
            assert fast.error is not None and fast.error[0] == "CredentialsError"
            assert KEY not in fast.error[1] and KEY[-6:] not in fast.error[1]


def test_key_and_base_from_the_environment_match(fake_llm, paths, no_provider_keys, monkeypatch):
    """A container configured by env (OPENAI_API_BASE / OPENAI_API_KEY) resolves the same target on both paths."""
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for call in CALLS:
        fast, lite = both(call, fake_llm, paths, prompt=PROMPT,
                          provider_kw=dict(model_default="openai/gpt-4o-mini", retry=FAST, timeout=5.0))
        assert_same(fast, lite)
        assert fast.reply is not None


# ------------------------------------------------------------------------------------------ property
_SCRIPTABLE = ["ok", "error-500", "error-502", "error-429-noretry", "error-400", "error-404", "reset", "cut-stream",
               "malformed-json", "no-choices", "ctx-overflow", "slow-stream"]
_OPTION_VALUES = {
    "temperature": st.floats(0, 2, allow_nan=False),
    "top_p": st.floats(0, 1, allow_nan=False),
    "max_tokens": st.integers(1, 4096),
    "seed": st.integers(-(2**31), 2**31 - 1),
    "stop": st.one_of(st.text(min_size=1, max_size=5), st.lists(st.text(min_size=1, max_size=5), max_size=3)),
    "presence_penalty": st.floats(-2, 2, allow_nan=False),
    "frequency_penalty": st.floats(-2, 2, allow_nan=False),
    "system": st.text(min_size=1, max_size=40).filter(str.strip),
}


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    call=st.sampled_from(CALLS),
    prompt=st.text(min_size=1, max_size=80).filter(str.strip),
    options=st.fixed_dictionaries({}, optional=_OPTION_VALUES),
    script=st.lists(st.sampled_from(_SCRIPTABLE), max_size=3),
)
def test_random_prompts_options_and_fault_scripts_give_identical_outcomes_on_both_paths(
    call, prompt, options, script, fake_llm, paths, no_provider_keys
):
    fast, lite = both(call, fake_llm, paths, prompt=prompt, provider_kw=kw(fake_llm.openai_base),
                      script=tuple(script), call_kw=options)
    assert_same(fast, lite)


# ------------------------------------------------------------------------------------------ the switch
def _took(paths, llm, call="chat"):
    paths.clear()
    run_call(call, llm, PROMPT)
    return dict(paths)


def test_fast_path_false_and_the_env_switch_send_everything_through_litellm(fake_llm, paths, no_provider_keys,
                                                                             monkeypatch):
    on = get_llm_provider("litellm", **kw(fake_llm.openai_base))
    assert _took(paths, on) == {"fast": 1}
    off = get_llm_provider("litellm", fast_path=False, **kw(fake_llm.openai_base))
    for call in CALLS:
        assert _took(paths, off, call) == {"litellm": 1}
    for value in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("THEORY_MODAL_FAST_PATH", value)
        assert _took(paths, on) == {"litellm": 1}
    monkeypatch.setenv("THEORY_MODAL_FAST_PATH", "1")
    assert _took(paths, on) == {"fast": 1}


@pytest.mark.parametrize("case", ["smoke", "ollama", "reasoning", "callback", "litellm-global", "org-env"])
def test_calls_litellm_would_send_differently_stay_on_litellm(case, fake_llm, paths, no_provider_keys,
                                                               monkeypatch, litellm_loaded):
    """Smoke (mock_response), other protocols, parameter-rewriting models, registered callbacks (they would
    not fire), LiteLLM globals and org variables (they change the request) keep the call on LiteLLM."""
    config = kw(fake_llm.openai_base)
    if case == "smoke":
        config["smoke"] = True
    elif case == "ollama":
        config = kw(fake_llm.ollama_base, "ollama_chat/qwen2.5:0.5b")
    elif case == "reasoning":
        config = kw(fake_llm.openai_base, "openai/o3-mini")
    elif case == "callback":
        monkeypatch.setattr(litellm_loaded, "success_callback", [lambda *a, **k: None])
    elif case == "litellm-global":
        monkeypatch.setattr(litellm_loaded, "headers", {"x-team": "a"})
    elif case == "org-env":
        monkeypatch.setenv("OPENAI_ORGANIZATION", "org-123")
    llm = get_llm_provider("litellm", **config)
    assert _took(paths, llm) == {"litellm": 1}


def test_an_option_the_model_does_not_take_stays_on_litellm(fake_llm, paths, no_provider_keys):
    """gpt-4 takes no response_format in LiteLLM's map: LiteLLM decides what to do with it, not the fast path."""
    llm = get_llm_provider("litellm", **kw(fake_llm.openai_base, "openai/gpt-4"))
    paths.clear()
    run_call("chat", llm, PROMPT, response_format={"type": "json_object"})
    assert paths.get("fast", 0) == 0 and paths["litellm"] >= 1


def test_closing_a_fast_stream_early_releases_it(fake_llm, paths, no_provider_keys):
    llm = get_llm_provider("litellm", **kw(fake_llm.openai_base))
    stream = llm.stream_chat(PROMPT)
    assert next(stream)
    stream.close()
    assert not stream.done and paths["fast"] == 1

    async def early() -> None:
        s = llm.astream_chat(PROMPT)
        await s.__anext__()
        await s.aclose()

    asyncio.run(early())
    assert paths["fast"] == 2


# ------------------------------------------------------------------------------------------ contract suite
class TestFastPathPassesTheContract(ProviderContract):
    provider_name = "litellm"

    @pytest.fixture
    def provider(self, fake_llm, no_provider_keys):
        return get_llm_provider("litellm", fast_path=True, **kw(fake_llm.openai_base))

    def expected_text(self, prompt):
        return f"echo: {prompt}"


class TestPlainLiteLLMPassesTheContract(TestFastPathPassesTheContract):
    @pytest.fixture
    def provider(self, fake_llm, no_provider_keys):
        return get_llm_provider("litellm", fast_path=False, **kw(fake_llm.openai_base))
