"""The static vendor -> key-variable table agrees with LiteLLM, so the CLI's early refusal (made before litellm is
imported) is the very error the provider would raise later."""

from __future__ import annotations

import pytest

from providers import CredentialsError, get_llm_provider
from providers.vendors import VENDOR_KEYS, missing_key_message


@pytest.mark.parametrize("vendor", sorted(VENDOR_KEYS))
def test_the_early_message_is_the_providers_own(vendor, no_provider_keys):
    model = f"{vendor}/some-model"
    expected = missing_key_message(model, {})
    assert expected is not None
    with pytest.raises(CredentialsError) as info:
        get_llm_provider("litellm", model_default=model).chat("hi")
    assert str(info.value) == expected


@pytest.mark.parametrize("vendor", sorted(VENDOR_KEYS))
def test_each_listed_variable_is_enough_for_litellm(vendor, no_provider_keys, monkeypatch):
    from providers.litellm_provider import load_litellm

    litellm = load_litellm()
    for name in VENDOR_KEYS[vendor]:
        with monkeypatch.context() as m:
            m.setenv(name, "k-test-000000")
            missing = litellm.validate_environment(model=f"{vendor}/some-model").get("missing_keys") or []
            assert [k for k in missing if not k.endswith("_API_BASE")] == []
            assert missing_key_message(f"{vendor}/some-model", {name: "k-test-000000"}) is None


def test_unknown_or_local_vendors_are_left_to_the_provider():
    assert missing_key_message("ollama_chat/qwen2.5:0.5b", {}) is None
    assert missing_key_message("azure/my-deployment", {}) is None
    assert missing_key_message("gpt-4o-mini", {}) is None
