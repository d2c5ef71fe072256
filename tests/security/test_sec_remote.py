"""The deployed function, attacked through the loopback emulator (real `modal deploy`, real containers).

- The allow-list baked in at deploy time refuses other models, naming THEORY_MODAL_ALLOWED_MODELS, before the
  provider runs (the fake LLM server sees nothing).
- A raw payload (no adapter-side validation) with a URL-shaped model is refused in the container; the canary
  it names is never dialled, and nothing else is either.
- An upstream that echoes the container's key (a key the caller never knew) at random offsets: no 8-character
  run of it reaches the caller's exception, its repr, a batch line, or the containers' logs.
- A Modal function timeout is a typed one-line error naming the function and its timeout.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from security_helpers import leaked

from providers import InvalidRequestError, ProviderError
from theory_modal.adapters import ModalAdapter, ModalFunctionTimeoutError, error_dict
from theory_modal.testing.emulator import ModalEmulator
from theory_modal.testing.emulator.fixtures import reset_modal_client
from theory_modal.testing.fake_llm import FakeLLMServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "sec-theory"
ALLOWED = "openai/echo-key-*,openai/gpt-4o-mini,mock"
# A random key per session, known only to the containers (the caller's process never sees it).
KEY = "sk-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def remote_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def emulator(llm_server, tmp_path_factory, canary) -> Iterator[ModalEmulator]:
    emu = ModalEmulator(secrets={"sec-openai": {"OPENAI_API_KEY": KEY, "OPENAI_API_BASE": llm_server.openai_base}},
                        state_dir=tmp_path_factory.mktemp("sec-emulator"))
    emu.start()
    try:
        emu.deploy(ROOT / "deploy.py", env={"THEORY_MODAL_APP": APP, "THEORY_MODAL_SECRETS": "sec-openai",
                                            "THEORY_MODAL_ALLOWED_MODELS": ALLOWED})
        emu.deploy(Path(__file__).parent / "apps" / "timeout_app.py")
        yield emu
    finally:
        reset_modal_client()
        emu.stop()


@pytest.fixture
def remote(emulator, monkeypatch) -> ModalAdapter:
    import os

    for key in list(os.environ):
        if key.startswith("MODAL_") or key.endswith(("_API_KEY", "_API_BASE")):
            monkeypatch.delenv(key)
    for key, value in emulator.client_env().items():
        monkeypatch.setenv(key, value)
    reset_modal_client()
    return ModalAdapter(APP)


def _raw(function: str):
    import modal

    return modal.Function.from_name(APP, function)


not_allowed = st.one_of(
    st.from_regex(r"openai/gpt-4o(-mini-[a-z0-9]{1,6}|[a-z0-9]{1,6})", fullmatch=True),
    st.from_regex(r"(anthropic|groq|mistral|ollama_chat)/[a-z][a-z0-9.\-]{0,20}", fullmatch=True),
)


@remote_settings(8)
@given(model=not_allowed)
def test_models_outside_the_allow_list_are_refused_in_the_container(model, remote, llm_server):
    """The caller's process has no THEORY_MODAL_ALLOWED_MODELS: the refusal proves the deploy-time value was
    baked into the image and enforced by the container's handler."""
    import os

    assert "THEORY_MODAL_ALLOWED_MODELS" not in os.environ
    llm_server.reset()
    with pytest.raises(InvalidRequestError) as info:
        remote.run("llm/litellm@1", {"prompt": "hi", "mode": "live", "model": model})
    assert "THEORY_MODAL_ALLOWED_MODELS" in str(info.value) and model in str(info.value)
    assert llm_server.hits() == 0
    [item] = list(remote.map("llm/litellm@1", [{"prompt": "hi", "mode": "live", "model": model}]))
    assert "THEORY_MODAL_ALLOWED_MODELS" in item["error"]["message"]


def test_the_default_model_is_subject_to_the_allow_list_and_allowed_models_work(remote, llm_server):
    """No model in the payload means the provider's default (openai/gpt-4o-mini): allowed here, and served."""
    resp = remote.run("llm/litellm@1", {"prompt": "hello there", "mode": "live"})
    assert resp["text"] == "echo: hello there" and resp["model"] == "openai/gpt-4o-mini"
    assert remote.run("llm/mock@1", {"prompt": "hi"})["text"] == "mock reply to: hi"


url_models = st.builds(
    lambda prov, scheme, path, suffix: f"{prov}/{scheme}://127.0.0.1:{{port}}/{path}{suffix}",
    st.sampled_from(["oobabooga", "huggingface", "openai", "hosted_vllm"]),
    st.sampled_from(["http", "https"]),
    st.text(alphabet=string.ascii_letters + "-_/", min_size=1, max_size=20),
    st.sampled_from(["", "#", "?admin=1"]),
)


@remote_settings(8)
@given(template=url_models)
def test_raw_payloads_with_url_models_are_refused_in_the_container(template, remote, canary, llm_server):
    """Straight to the deployed function, skipping every caller-side check: the container refuses it. A raw
    Modal caller gets the wire's builtin RuntimeError carrying the error object; it rebuilds as the typed error."""
    from theory_modal.wire import error_from_remote

    model = template.format(port=canary.port)
    llm_server.reset()
    with pytest.raises(RuntimeError, match=r"rule: ") as info:
        _raw("litellm_chat").remote({"prompt": "hi", "mode": "live", "model": model})
    assert isinstance(error_from_remote(info.value), InvalidRequestError)
    assert canary.accepted == [] and llm_server.hits() == 0


@remote_settings(12)
@given(offset=st.one_of(st.integers(420, 510), st.integers(0, 2000)), status=st.sampled_from([400, 404, 500]))
def test_an_echoed_container_key_never_reaches_the_caller(offset, status, remote, emulator, llm_server):
    llm_server.reset()
    model = f"openai/echo-key-{status}-{offset}"
    with pytest.raises(ProviderError) as info:
        remote.run("llm/litellm@1", {"prompt": "hi", "mode": "live", "model": model})
    assert llm_server.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"  # it really was echoed
    lines = [json.dumps(r) for r in remote.map("llm/litellm@1", [{"prompt": "hi", "mode": "live", "model": model}])]
    surfaces = [str(info.value), repr(info.value), json.dumps(error_dict(info.value)), *lines,
                emulator.app_logs(APP)]
    assert leaked(KEY, *surfaces) == []


def test_a_function_timeout_is_named_as_one(emulator, remote):
    adapter = ModalAdapter("sec-timeout")
    with pytest.raises(ModalFunctionTimeoutError) as info:
        adapter._call("sleepy", {"x": 1})
    message = str(info.value)
    assert "'sleepy'" in message and "2s timeout" in message and "\n" not in message
    assert "unreachable" not in message
    [result] = list(adapter._map("sleepy", [{"x": 1}], 1))
    assert isinstance(result, ModalFunctionTimeoutError) and error_dict(result)["kind"] == "modal_function_timeout"
