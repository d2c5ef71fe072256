"""Adapters: the local adapter passes the provider contract; batch keeps going; Modal errors are one line, fast."""

from __future__ import annotations

import socket
import time

import pytest

from contract import ProviderContract, StructuredContract
from providers import InvalidRequestError
from theory_modal.adapters import (
    AdapterProvider,
    LocalAdapter,
    ModalAdapter,
    ModalCredentialsError,
    ModalUnreachableError,
    get_adapter,
)
from theory_modal.catalog import ProcessorRefError


class TestLocalAdapterMock(ProviderContract, StructuredContract):
    provider_name = "mock"

    @pytest.fixture
    def provider(self):
        return AdapterProvider(get_adapter("local"), "llm/mock@1")

    def expected_text(self, prompt):
        return f"mock reply to: {prompt}"


class TestLocalAdapterLiteLLMSmoke(ProviderContract, StructuredContract):
    provider_name = "litellm"
    stream_usage_equals_chat = False  # LiteLLM's mock: fixed usage for chat, counted for streams

    @pytest.fixture
    def provider(self, no_provider_keys):
        return AdapterProvider(get_adapter("local"), "llm/litellm@1", mode="smoke")

    def expected_text(self, prompt):
        return f"smoke reply from openai/gpt-4o-mini: {prompt}"


class TestLocalAdapterLiteLLMLiveAgainstFakeOpenAI(ProviderContract, StructuredContract):
    provider_name = "litellm"

    @pytest.fixture
    def provider(self, fake_llm, no_provider_keys, monkeypatch):
        # Live mode reads configuration from the environment, as a Modal container does from its Secrets.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-adapter-000000")
        monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
        from theory_modal import handlers

        handlers._providers.clear()
        yield AdapterProvider(get_adapter("local"), "llm/litellm@1", mode="live")
        handlers._providers.clear()

    def expected_text(self, prompt):
        return f"echo: {prompt}"


def test_local_adapter_runs_the_same_function_objects_as_modal():
    from theory_modal.app import FUNCTIONS

    import asyncio

    direct = asyncio.run(FUNCTIONS["mock_chat"].local({"prompt": "same", "mode": "smoke"}))
    assert LocalAdapter().run("llm/mock@1", {"prompt": "same", "mode": "smoke"}) == direct


def test_response_carries_the_ref_that_produced_it():
    resp = LocalAdapter().run("llm/mock", {"prompt": "x"})
    assert resp["ref"] == "llm/mock@1" and resp["provider"] == "mock"


def test_unknown_ref_and_bad_payload_fail_before_anything_runs():
    with pytest.raises(ProcessorRefError, match="known refs: llm/litellm@1, llm/mock@1"):
        LocalAdapter().run("llm/gpt@1", {"prompt": "x"})
    with pytest.raises(InvalidRequestError, match="request.mode"):
        LocalAdapter().run("llm/mock@1", {"prompt": "x", "mode": "production"})
    with pytest.raises(InvalidRequestError, match="unknown field"):
        LocalAdapter().run("llm/mock@1", {"prompt": "x", "temperature": 1})
    with pytest.raises(InvalidRequestError, match="request.options: option 'temperature'"):
        LocalAdapter().run("llm/mock@1", {"prompt": "x", "options": {"temperature": "hot"}})


def test_unknown_adapter_names_the_choices():
    with pytest.raises(InvalidRequestError, match="choose one of: local, modal"):
        get_adapter("lambda")


def test_batch_keeps_every_item_and_records_failures_in_place():
    payloads = [{"prompt": "a"}, {"prompt": ""}, {"prompt": "c", "options": {"mock_error": "rate_limited"}},
                {"prompt": "d"}, "not a dict"]
    results = list(LocalAdapter().map("llm/mock@1", payloads, concurrency=3))
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert results[0]["text"] == "mock reply to: a" and results[3]["text"] == "mock reply to: d"
    assert results[1]["error"]["kind"] == "invalid_request"
    assert results[2]["error"] == {"type": "RateLimitError", "kind": "rate_limited",
                                   "message": "Mock rate limit (scripted failure).", "provider": "mock",
                                   "model": "mock", "retry_after": 1.0, "retryable": True}
    assert results[4]["error"]["type"] == "InvalidRequestError"


def test_attachments_cross_the_adapter_as_json_and_are_acknowledged():
    from providers import Attachment

    png = Attachment.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, name="p.png")
    reply = AdapterProvider(get_adapter("local"), "llm/mock@1").chat("see", attachments=[png])
    assert f"p.png image/png 16 bytes sha256:{png.sha256[:12]}" in reply.text


# ------------------------------------------------------------------ Modal adapter error paths without a server
@pytest.fixture
def no_modal_config(tmp_path, monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("MODAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "absent.toml"))
    import modal.config

    monkeypatch.setattr(modal.config, "config", modal.config.Config())  # re-read: no toml, no env


def test_modal_adapter_without_token_says_how_to_fix_it_at_once(no_modal_config):
    t0 = time.monotonic()
    with pytest.raises(ModalCredentialsError, match=r"run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"):
        ModalAdapter().run("llm/mock@1", {"prompt": "x"})
    assert time.monotonic() - t0 < 1.0


def test_modal_adapter_unreachable_control_plane_fails_within_the_connect_timeout(no_modal_config, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    import modal.config

    monkeypatch.setattr(modal.config, "config", modal.config.Config())
    t0 = time.monotonic()
    with pytest.raises(ModalUnreachableError, match=f"unreachable at http://127.0.0.1:{port}"):
        ModalAdapter(connect_timeout=1.5).run("llm/mock@1", {"prompt": "x"})
    assert time.monotonic() - t0 < 3.0
