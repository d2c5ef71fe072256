"""Every provider passes the same contract suite."""

from __future__ import annotations

import pytest

from contract import ProviderContract, StructuredContract
from providers import RetryPolicy, get_llm_provider

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


class TestMockProvider(ProviderContract, StructuredContract):
    provider_name = "mock"

    @pytest.fixture
    def provider(self):
        return get_llm_provider("mock")

    def expected_text(self, prompt):
        return f"mock reply to: {prompt}"


class TestLiteLLMSmoke(ProviderContract, StructuredContract):
    provider_name = "litellm"
    # LiteLLM's mock path reports fixed 10/20 tokens for chat but counts streamed tokens with its tokenizer.
    stream_usage_equals_chat = False

    @pytest.fixture
    def provider(self, no_provider_keys):
        return get_llm_provider("litellm", smoke=True)

    def expected_text(self, prompt):
        return f"smoke reply from openai/gpt-4o-mini: {prompt}"


class TestLiteLLMAgainstFakeOpenAI(ProviderContract, StructuredContract):
    provider_name = "litellm"

    @pytest.fixture
    def provider(self, fake_llm, no_provider_keys):
        return get_llm_provider(
            "litellm", model_default="openai/gpt-4o-mini", api_base=fake_llm.openai_base, api_key="sk-test-contract",
            timeout=5, retry=FAST_RETRY,
        )

    def expected_text(self, prompt):
        return f"echo: {prompt}"


class TestLiteLLMAgainstFakeOllama(ProviderContract, StructuredContract):
    provider_name = "litellm"

    @pytest.fixture
    def provider(self, fake_llm, no_provider_keys):
        return get_llm_provider(
            "litellm", model_default="ollama_chat/qwen2.5:0.5b", api_base=fake_llm.ollama_base, timeout=5,
            retry=FAST_RETRY,
        )

    def expected_text(self, prompt):
        return f"echo: {prompt}"
