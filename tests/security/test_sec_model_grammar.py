"""The model-string grammar (providers/model_names.py), searched rather than listed.

Invariants:
- every string the grammar accepts is ``<vetted provider>/<name>`` over the small alphabet, with no scheme,
  traversal, query, fragment, percent-escape, backslash, whitespace, control character or host-like start;
- every string with one of those shapes is refused with InvalidRequestError (a ValueError) naming the rule;
- a refused model never opens a socket on any path (provider, local adapter, CLI), and nothing ever dials the
  canary server whose address the model names;
- for every vetted provider, the host LiteLLM dials never comes from the model name.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import InvalidRequestError, get_llm_provider
from providers.model_names import (
    KNOWN_LITELLM_PROVIDERS,
    LITELLM_PROVIDERS,
    MAX_MODEL_LENGTH,
    REFUSED_PROVIDERS,
    check_model_string,
)
from providers.request import check_model

def fixtures_ok(n: int) -> settings:
    """Settings for properties that use function-scoped fixtures (cleared at the start of each example)."""
    return settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=n)
NAME_ALPHABET = string.ascii_letters + string.digits + "._:@+/-"
RULE = re.compile(r"\(rule: [a-z\-]+\)")

vetted = st.sampled_from(sorted(LITELLM_PROVIDERS))
any_provider = st.sampled_from(sorted(KNOWN_LITELLM_PROVIDERS | {"bogus", "openai ", "OpenAI", "", "a/b"}))
names = st.text(alphabet=NAME_ALPHABET, min_size=1, max_size=60)


def _refused(model: object, *, litellm: bool = True) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        check_model_string(model, litellm=litellm)
    assert isinstance(info.value, ValueError)
    assert RULE.search(str(info.value)), str(info.value)
    assert "\n" not in str(info.value)
    return info.value


# ------------------------------------------------------------------------------------- the static lists
def test_static_provider_list_equals_litellms_own(litellm_loaded):
    """The grammar decides without importing litellm; its copy of the provider list must not drift."""
    installed = {getattr(p, "value", p) for p in litellm_loaded.provider_list}
    assert KNOWN_LITELLM_PROVIDERS == installed


def test_vetted_and_refused_providers_are_litellm_providers_and_disjoint():
    assert LITELLM_PROVIDERS <= KNOWN_LITELLM_PROVIDERS
    assert set(REFUSED_PROVIDERS) <= KNOWN_LITELLM_PROVIDERS
    assert not LITELLM_PROVIDERS & set(REFUSED_PROVIDERS)
    for must_refuse in ("oobabooga", "huggingface", "baseten"):
        assert must_refuse in REFUSED_PROVIDERS


def test_grammar_module_does_not_import_litellm():
    import subprocess
    import sys

    code = "import sys, providers.request, providers.model_names; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------------------------- soundness
@settings(max_examples=400, deadline=None)
@given(provider=any_provider, name=st.text(min_size=0, max_size=80))
def test_every_accepted_model_satisfies_the_grammar(provider, name):
    """Whatever is accepted is <vetted>/<name> over the alphabet, without any forbidden shape."""
    model = f"{provider}/{name}"
    try:
        check_model_string(model)
    except InvalidRequestError as exc:
        assert RULE.search(str(exc))
        return
    prov, _, rest = model.partition("/")
    assert prov in LITELLM_PROVIDERS or prov == ""  # "" + "/name": the whole string is a bare name
    assert len(model) <= MAX_MODEL_LENGTH and rest
    assert all(c in NAME_ALPHABET for c in rest)
    for bad in ("://", "..", "?", "#", "%", "\\", "//"):
        assert bad not in model
    assert not rest.startswith("/") and not rest.endswith("/")


@settings(max_examples=300, deadline=None)
@given(
    provider=vetted,
    head=names,
    tail=names,
    bad=st.one_of(
        st.sampled_from(["://", "..", "?", "#", "%", "\\", "%2e%2e", "%3A%2F%2F", "?x=1", "#frag"]),
        st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]).map(str),
        st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF).filter(lambda c: not c.isascii()),
    ),
)
def test_forbidden_shapes_anywhere_are_refused(provider, head, tail, bad):
    """A scheme, traversal, query, fragment, escape, whitespace, control or non-ASCII character anywhere in the
    model is refused, with the rule named, for LiteLLM and for self-named (mock) models alike."""
    model = f"{provider}/{head}{bad}{tail}"
    _refused(model)
    _refused(f"{head}{bad}{tail}", litellm=False)


hosts = st.one_of(
    st.sampled_from(["localhost", "LOCALHOST:8080", "127.0.0.1", "10.0.0.1:80", "169.254.169.254"]),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)).map(
        lambda t: ".".join(map(str, t))
    ),
    st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z][a-z0-9\-]{0,10}){0,3}\.(com|net|internal|io)(:[0-9]{1,5})?",
                  fullmatch=True),
    st.from_regex(r"[a-z]{1,8}:[A-Za-z0-9]{1,8}@[a-z]{1,8}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(provider=st.sampled_from(sorted(KNOWN_LITELLM_PROVIDERS)), scheme=st.sampled_from(["http", "https", "file",
       "gopher", "ftp", "HTTP", "ws"]), host=hosts, path=names)
def test_url_shaped_models_are_refused(provider, scheme, host, path):
    """A URL in the model, for ANY LiteLLM provider (oobabooga and huggingface use it as the request URL)."""
    _refused(f"{provider}/{scheme}://{host}/{path}")
    _refused(f"{provider}/{host}/{path}")  # a host-like first segment, even without a scheme


@settings(max_examples=200, deadline=None)
@given(provider=st.sampled_from(sorted(REFUSED_PROVIDERS)), name=names)
def test_refused_providers_are_refused_whatever_the_name(provider, name):
    err = _refused(f"{provider}/{name}")
    assert "provider" in str(err)


@settings(max_examples=100, deadline=None)
@given(model=st.text(alphabet=NAME_ALPHABET, min_size=MAX_MODEL_LENGTH + 1, max_size=MAX_MODEL_LENGTH + 400))
def test_overlong_models_are_refused(model):
    assert "(rule: length)" in str(_refused("openai/" + model))


@pytest.mark.parametrize("model", [
    "openai/gpt-4o-mini", "ollama_chat/qwen2.5:0.5b", "anthropic/claude-3-5-sonnet-20240620",
    "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0", "vertex_ai/claude-3-5-sonnet@20240620",
    "openrouter/meta-llama/llama-3.1-8b-instruct", "fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct",
    "together_ai/Qwen/Qwen2.5-72B-Instruct-Turbo", "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct",
])
def test_real_model_names_pass(model):
    """The grammar must not refuse the names people actually use (a guard against over-tightening)."""
    assert check_model(model) == model


def test_mock_keeps_its_own_names():
    assert check_model("mock", provider="mock") == "mock"
    assert get_llm_provider("mock").chat("hi", model="mock-large").model == "mock-large"
    with pytest.raises(InvalidRequestError, match=r"rule: scheme"):
        get_llm_provider("mock").chat("hi", model="http://127.0.0.1/x")


def test_non_string_models_are_refused():
    for model in (5, b"openai/x", ["openai/x"], {"m": 1}, 1.5):
        with pytest.raises(InvalidRequestError, match="rule: type"):
            check_model(model)


# ------------------------------------------------------------------------------------- no socket, ever
url_models = st.builds(
    lambda prov, scheme, path, suffix: f"{prov}/{scheme}://127.0.0.1:{{port}}/{path}{suffix}",
    st.sampled_from(["oobabooga", "huggingface", "baseten", "hosted_vllm", "openai", "ollama_chat", "vllm"]),
    st.sampled_from(["http", "https"]),
    names,
    st.sampled_from(["", "#", "?q=1", "/../admin"]),
)


@fixtures_ok(60)
@given(template=url_models)
def test_url_models_never_open_a_socket_through_the_provider(template, canary, sockets, no_provider_keys):
    """Live provider, real litellm, a key set: a URL-shaped model is refused before any socket, and the
    canary it names is never dialled."""
    model = template.format(port=canary.port)
    sockets.clear()
    llm = get_llm_provider("litellm", api_key="sk-canary-test-key-0123456789", timeout=2, max_retries=0)
    with pytest.raises(InvalidRequestError):
        llm.chat("hello", model=model)
    with pytest.raises(InvalidRequestError):
        llm.stream_chat("hello", model=model)
    assert sockets == []
    assert canary.accepted == []


@fixtures_ok(40)
@given(template=url_models)
def test_url_models_never_open_a_socket_through_the_local_adapter_and_cli(template, canary, sockets, capsys,
                                                                         no_provider_keys):
    from theory_modal.adapters import get_adapter
    from theory_modal.cli import main

    model = template.format(port=canary.port)
    sockets.clear()
    payload = {"prompt": "hello", "mode": "live", "model": model}
    with pytest.raises(InvalidRequestError):
        get_adapter("local").run("llm/litellm@1", payload)
    [item] = list(get_adapter("local").map("llm/litellm@1", [payload]))
    assert item["error"]["kind"] == "invalid_request"
    capsys.readouterr()
    assert main(["run", "hello", "--mode", "live", "--model", model]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "(rule: " in err
    assert sockets == []
    assert canary.accepted == []


def test_cli_refuses_a_bad_model_before_importing_litellm():
    """The grammar is static: the CLI answers a URL-shaped model with exit 2 without the ~3 s litellm import."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from theory_modal.cli import main\n"
        "rc = main(['run', 'hi', '--model', 'oobabooga/http://127.0.0.1:9/x'])\n"
        "print(rc, 'litellm' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["2", "False"], r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "rule: scheme" in r.stderr


# ------------------------------------------------------------------------------------- vetted providers
canary_names = st.builds(
    lambda host, path: f"{host}{path}",
    st.sampled_from(["canary-host", "canary.internal", "canary:4444", "canary@x", "x-canary.io-v1", "canary-127-0-0-1"]),
    st.sampled_from(["", "/v1", "/canary/x", ":0", "@2024"]),
)


@pytest.mark.slow
@fixtures_ok(120)
@given(provider=vetted, name=canary_names)
def test_vetted_providers_never_dial_a_host_from_the_model_name(provider, name, sockets, monkeypatch, litellm_loaded):
    """Real LiteLLM, every vetted provider, names that try to look like hosts: whatever LiteLLM resolves or
    dials, no part of it comes from the model name (all outside traffic is refused by the guard)."""
    from providers.model_names import check_model_string as grammar

    model = f"{provider}/{name}"
    try:
        grammar(model)
    except InvalidRequestError:
        return  # refused up front: nothing to dial
    monkeypatch.setenv(f"{provider.upper().replace('-', '_')}_API_KEY", "sk-vetting-key-0123456789")
    sockets.clear()
    llm = get_llm_provider("litellm", api_key="sk-vetting-key-0123456789", timeout=1, max_retries=0)
    try:
        llm.chat("hi", model=model)
    except Exception:  # noqa: BLE001 - every call fails here (no network); only where it tried to go matters
        pass
    dialled = [str(target) for _, target in sockets]
    assert not [d for d in dialled if "canary" in d], (model, dialled)
