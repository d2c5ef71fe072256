"""The whole remote path with no cloud: deploy, smoke run, remote chat, stream and batch through the emulator."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from e2e_settings import ROOT, SENTINEL

from contract import PROMPT, ProviderContract, StructuredContract
from providers import ProviderError, RateLimitError
from theory_modal.adapters import (
    AdapterProvider,
    LocalAdapter,
    ModalAdapter,
    ModalNotDeployedError,
    ModalUnreachableError,
)


def _strip(resp: dict) -> dict:
    out = {k: v for k, v in resp.items()}
    out["usage"] = {k: v for k, v in resp["usage"].items() if k != "latency_ms"}
    return out


class TestModalAdapterMock(ProviderContract, StructuredContract):
    provider_name = "mock"

    @pytest.fixture
    def provider(self, modal_client):
        return AdapterProvider(ModalAdapter(), "llm/mock@1")

    def expected_text(self, prompt):
        return f"mock reply to: {prompt}"


class TestModalAdapterLiteLLMLive(ProviderContract, StructuredContract):
    """LiteLLM in live mode inside containers: the key and base URL come only from the emulator's secret."""

    provider_name = "litellm"

    @pytest.fixture
    def provider(self, modal_client):
        return AdapterProvider(ModalAdapter(), "llm/litellm@1", mode="live")

    def expected_text(self, prompt):
        return f"echo: {prompt}"


def test_deploy_created_every_function(deployed, emulator):
    for name in ("mock_chat", "mock_stream", "litellm_chat", "litellm_stream"):
        assert emulator.deployed_function("theory", name).function_name == name


@pytest.mark.parametrize("ref", ["llm/mock@1", "llm/litellm@1"])
def test_remote_results_equal_the_local_adapters(modal_client, ref):
    payload = {"prompt": PROMPT, "mode": "smoke"}
    remote, local = ModalAdapter().run(ref, payload), LocalAdapter().run(ref, payload)
    assert _strip(remote) == _strip(local)
    rs, ls = ModalAdapter().stream(ref, payload), LocalAdapter().stream(ref, payload)
    assert list(rs) == list(ls)
    assert _strip(rs.response) == _strip(ls.response)


def test_batch_through_map_equals_local_and_keeps_failed_items(modal_client):
    payloads = [{"prompt": f"p{i}"} for i in range(12)]
    payloads[3] = {"prompt": "bad", "options": {"mock_error": "timeout"}}
    payloads[7] = {"prompt": ""}
    remote = list(ModalAdapter().map("llm/mock@1", payloads))
    local = list(LocalAdapter().map("llm/mock@1", payloads))
    assert [r["index"] for r in remote] == list(range(12))
    assert [("error" in r) for r in remote] == [i in (3, 7) for i in range(12)]
    assert remote[3]["error"]["type"] == "ProviderTimeoutError"
    assert [_strip(r) if "error" not in r else r["error"]["type"] for r in remote] == [
        _strip(r) if "error" not in r else r["error"]["type"] for r in local
    ]


def test_remote_provider_error_keeps_its_type_and_fields(modal_client):
    with pytest.raises(RateLimitError) as info:
        ModalAdapter().run("llm/mock@1", {"prompt": "x", "options": {"mock_error": "rate_limited"}})
    assert info.value.retry_after == 1.0 and info.value.provider == "mock"
    assert "Mock rate limit" in str(info.value)


def test_secret_reaches_the_container_and_never_the_caller(modal_client, e2e_fake_llm, capfd):
    e2e_fake_llm.reset()
    resp = ModalAdapter().run("llm/litellm@1", {"prompt": "secret path", "mode": "live"})
    assert resp["text"] == "echo: secret path"
    assert e2e_fake_llm.requests[-1]["headers"]["authorization"] == f"Bearer {SENTINEL}"  # it got there
    with pytest.raises(ProviderError) as info:
        ModalAdapter().run("llm/litellm@1", {"prompt": "x", "mode": "live", "model": "openai/error-401"})
    out, err = capfd.readouterr()
    for text in (str(resp), str(info.value), repr(info.value), out, err):
        assert SENTINEL not in text


def test_app_not_deployed_is_one_clear_line(modal_client):
    with pytest.raises(ModalNotDeployedError, match=r"no function 'mock_chat'.*`modal deploy deploy.py`"):
        ModalAdapter(app_name="not-deployed").run("llm/mock@1", {"prompt": "x"})


def test_modal_run_smoke_prints_the_table_and_exits_0(emulator, deployed):
    r = emulator.run_cli(["run", "deploy.py", "--mode", "smoke"], cwd=ROOT, env={"THEORY_MODAL_SECRETS": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "remote" in r.stdout and "llm/mock@1" in r.stdout and "llm/litellm@1" in r.stdout
    assert "NO" not in r.stdout


def test_modal_run_with_a_failing_processor_exits_non_zero(emulator, deployed):
    # live mode without the OpenAI secret: the litellm processor fails, the mock passes.
    r = emulator.run_cli(["run", "deploy.py", "--mode", "live"], cwd=ROOT, env={"THEORY_MODAL_SECRETS": ""})
    assert r.returncode != 0
    assert "OPENAI_API_KEY missing" in r.stdout and "NO" in r.stdout


def test_cli_modal_adapter_end_to_end(emulator, deployed, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MODAL_")}
    env.update(emulator.client_env())
    r = subprocess.run([sys.executable, "-m", "theory_modal", "run", "--ref", "llm/mock@1", "--adapter", "modal",
                        "--prompt", "over the wire", "--json"], capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '"text": "mock reply to: over the wire"' in r.stdout


def test_stopped_control_plane_fails_within_the_connect_timeout(modal_client, tmp_path_factory, monkeypatch):
    from theory_modal.testing.emulator import ModalEmulator
    from theory_modal.testing.emulator.fixtures import reset_modal_client

    emu = ModalEmulator(state_dir=tmp_path_factory.mktemp("stopped"))
    emu.start()
    env = emu.client_env()
    emu.stop()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_modal_client()
    t0 = time.monotonic()
    with pytest.raises(ModalUnreachableError, match="unreachable"):
        ModalAdapter(connect_timeout=2).run("llm/mock@1", {"prompt": "x"})
    assert time.monotonic() - t0 < 4
