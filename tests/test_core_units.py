"""Small units of the core: imports stay lazy, usage maths, registry, retry policy, the network guard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

import providers
from providers import LLMReply, RetryPolicy, UnknownProviderError, get_llm_provider, register_provider, to_micro_usd
from providers.errors import ProviderError, RateLimitError, redact
from providers.usage import validate_usage


def test_import_providers_pulls_in_neither_litellm_nor_modal():
    code = "import sys, providers; print(json.dumps(['litellm' in sys.modules, 'modal' in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False]


def test_building_a_litellm_provider_does_not_import_litellm():
    code = (
        "import sys, json, providers; p = providers.get_llm_provider('litellm', smoke=True); "
        "print(json.dumps('litellm' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


@pytest.mark.parametrize(
    "usd,micros",
    [(None, None), (0.0, 0), (8.1e-06, 8), (1.35e-05, 14), (3.6000000000000003e-06, 4), (2.5e-07, 0),
     (5e-07, 1), (1.5e-06, 2), (2.5e-06, 3), (1.0, 1_000_000)],
)
def test_micro_usd_rounds_half_up_not_bankers(usd, micros):
    assert to_micro_usd(usd) == micros


def test_reply_from_dict_rejects_wrong_usage_keys():
    good = {"text": "t", "provider": "p", "model": "m",
            "usage": {"tokens_in": 1, "tokens_out": 2, "latency_ms": 3, "usd_micros": None}}
    assert LLMReply.from_dict(good).usage["usd_micros"] is None
    with pytest.raises(ValueError, match="missing: \\['usd_micros'\\]"):
        LLMReply.from_dict({**good, "usage": {"tokens_in": 1, "tokens_out": 2, "latency_ms": 3}})
    with pytest.raises(ValueError, match="tokens_in"):
        validate_usage({"tokens_in": -1, "tokens_out": 2, "latency_ms": 3, "usd_micros": 0})
    with pytest.raises(ValueError, match="'text' must be a string"):
        LLMReply.from_dict({**good, "text": None})


def test_default_models_match_the_seed():
    assert providers.default_models["mock"] == "mock"
    assert providers.default_models["litellm"] == "openai/gpt-4o-mini"
    assert get_llm_provider("litellm").model_default == "openai/gpt-4o-mini"


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(UnknownProviderError, match="unknown provider 'gpt'; known providers: litellm, mock"):
        get_llm_provider("gpt")


def test_register_provider_adds_one_and_refuses_silent_replacement():
    from providers.mock import MockProvider

    class Echo(MockProvider):
        name = "echo"

    register_provider("echo_test", lambda **cfg: Echo(**cfg), default_model="echo-1")
    try:
        llm = get_llm_provider("echo_test")
        assert llm.chat("hi").model == "echo-1"
        assert "echo_test" in providers.available_providers()
        with pytest.raises(ValueError, match="already registered"):
            register_provider("echo_test", lambda **cfg: Echo(**cfg))
    finally:
        providers.registry._factories.pop("echo_test", None)
        providers.default_models.pop("echo_test", None)


# ------------------------------------------------------------------ retry policy
def _rate_limited(ra=None):
    return RateLimitError("rl", retry_after=ra)


def test_retry_policy_gives_up_on_non_retryable_errors_at_once():
    assert RetryPolicy().wait_before(1, ProviderError("x"), 0.0) is None


def test_retry_policy_bounds_attempts_and_honours_retry_after():
    p = RetryPolicy(max_attempts=3, max_retry_after_s=10)
    assert p.wait_before(1, _rate_limited(2.0), 0.0) == 2.0
    assert p.wait_before(3, _rate_limited(2.0), 0.0) is None
    assert p.wait_before(1, _rate_limited(11.0), 0.0) is None  # too long: let the caller decide


def test_retry_policy_backs_off_exponentially_with_jitter_and_respects_the_budget():
    p = RetryPolicy(max_attempts=10, base_delay_s=1.0, max_delay_s=4.0, budget_s=100)
    waits = [p.wait_before(n, _rate_limited(), 0.0) for n in (1, 2, 3, 4, 5)]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0
    assert all(w <= 4.0 for w in waits[3:])
    assert p.wait_before(1, _rate_limited(5.0), 96.0) is None


# ------------------------------------------------------------------ secrets
def test_redact_removes_given_values_env_keys_and_key_shapes(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_API_KEY", "zz-very-secret-value")
    text = redact("a sk-abcdefghijklmnop b zz-very-secret-value c Bearer abc.def.ghijkl d ?key=XYZ123&x=1 custom-12345",
                  "custom-12345")
    for secret in ("sk-abcdefghijklmnop", "zz-very-secret-value", "abc.def.ghijkl", "XYZ123", "custom-12345"):
        assert secret not in text
    assert text.count("[REDACTED]") == 5


# ------------------------------------------------------------------ the guard itself
def test_network_guard_fails_a_non_loopback_connection():
    from theory_modal.testing.network_guard import NonLoopbackNetworkError

    s = socket.socket()
    try:
        with pytest.raises(NonLoopbackNetworkError):
            s.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed; the guard must stop it first
    finally:
        s.close()
    with pytest.raises(NonLoopbackNetworkError):
        socket.getaddrinfo("api.openai.com", 443)
