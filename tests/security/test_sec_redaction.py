"""Redaction that cannot be cut around, searched: random keys at random offsets of upstream error text (around
the 500-character cut especially), through every output surface. The invariant: no run of 8+ characters of
the key appears in an exception's str/repr, to_dict(), a log record at DEBUG, stdout/stderr, a batch line or
the CLI's output. Keys are known to the process as an explicit ``api_key`` or as an environment variable."""

from __future__ import annotations

import json
import logging
import string

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from security_helpers import KEY_ALPHABET, leaked, secret_keys

from providers import ProviderError, get_llm_provider
from providers.errors import error_from_dict
from providers.litellm_errors import DETAIL_LIMIT, Target, map_litellm_error
from providers.redact import clip, mask_url, redact

LOGGERS = ("LiteLLM", "providers", "openai", "httpx", "httpcore", "theory_modal")
offsets = st.one_of(st.integers(DETAIL_LIMIT - 70, DETAIL_LIMIT + 10), st.integers(0, 1500))
fillers = st.text(alphabet=string.ascii_letters + string.digits + " .,:;-_/'\"{}[]()", max_size=40)


def fixtures_ok(n: int) -> settings:
    """Live-call properties: fixtures cleared per example; no shrinking (each example is a real call, and the
    first failing example is already a reproduction)."""
    return settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=n,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


def _surfaces(exc: BaseException) -> list[str]:
    from theory_modal.adapters import error_dict

    out = [str(exc), repr(exc), json.dumps(error_dict(exc))]
    if isinstance(exc, ProviderError):
        out += [json.dumps(exc.to_dict()), str(error_from_dict(exc.to_dict())), exc.message]
    return out


def _text_with_key(key: str, offset: int, filler: str, cut: int | None) -> str:
    head = (filler * (offset // max(1, len(filler)) + 1))[:offset] if filler else "x" * offset
    quoted = key if cut is None else key[:cut]
    return f"{head}{quoted} trailing upstream words"


# ------------------------------------------------------------------------------------------ the function
@settings(max_examples=500, deadline=None)
@given(key=secret_keys(), offset=offsets, filler=fillers, cut=st.one_of(st.none(), st.integers(8, 70)),
       limit=st.integers(20, 800))
def test_clip_never_leaves_a_fragment_of_a_known_key(key, offset, filler, cut, limit):
    """Whole key or any 8+ character head of it, anywhere, any cut: gone (explicit, remembered or env)."""
    text = _text_with_key(key, offset, filler, cut)
    assert leaked(key, clip(text, limit, key)) == []
    assert leaked(key, redact(text, key)) == []


@settings(max_examples=300, deadline=None)
@given(key=secret_keys(), offset=offsets, start=st.integers(0, 30), length=st.integers(8, 64))
def test_any_slice_of_an_env_key_is_removed(key, offset, start, length):
    """The upstream may quote any part of the key (its own truncation, a line break): every 8-char window goes."""
    import os

    part = key[start : start + length]
    assume(len(part) >= 8)
    os.environ["SECURITY_TEST_API_KEY"] = key
    try:
        assert leaked(key, redact("a" * offset + part + "\nmore")) == []
    finally:
        del os.environ["SECURITY_TEST_API_KEY"]


@settings(max_examples=300, deadline=None)
@given(user=st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20),
       password=st.text(alphabet=string.ascii_letters + string.digits + "-_.~!$&'()*+,;=", min_size=8, max_size=40),
       scheme=st.sampled_from(["http", "https", "postgres", "redis"]), port=st.integers(1, 65535))
def test_url_userinfo_is_never_printed(user, password, scheme, port):
    url = f"{scheme}://{user}:{password}@127.0.0.1:{port}/v1"
    assert mask_url(url) == f"{scheme}://[REDACTED]@127.0.0.1:{port}/v1"
    assert redact(f"Tried {url}. Could not connect") == f"Tried {scheme}://[REDACTED]@127.0.0.1:{port}/v1. Could not connect"


# ------------------------------------------------------------------------------------------ error mapping
@settings(max_examples=300, deadline=None)
@given(key=secret_keys(), offset=offsets, filler=fillers, cut=st.one_of(st.none(), st.integers(8, 70)),
       status=st.sampled_from([400, 404, 409, 422, 500, 502, 503]), how=st.sampled_from(["explicit", "env"]))
def test_mapped_upstream_errors_carry_no_key_fragment(key, offset, filler, cut, status, how, litellm_loaded):
    """The issue's reproduction, generalised: a key straddling the 500-character cut of upstream text."""
    import os

    lt = litellm_loaded
    text = _text_with_key(key, offset, filler, cut)
    cls = {400: lt.BadRequestError, 404: lt.NotFoundError,
           500: lt.InternalServerError, 502: lt.BadGatewayError, 503: lt.ServiceUnavailableError}.get(status)
    exc = (cls(message=text, llm_provider="openai", model="gpt-4o-mini") if cls
           else lt.APIError(status_code=status, message=text, llm_provider="openai", model="gpt-4o-mini"))
    t = Target("openai/gpt-4o-mini", "openai", "gpt-4o-mini", None, key if how == "explicit" else None)
    if how == "env":
        os.environ["SECURITY_TEST_API_KEY"] = key
    try:
        err = map_litellm_error(exc, t)
        surfaces = _surfaces(err)
    finally:
        os.environ.pop("SECURITY_TEST_API_KEY", None)
    assert leaked(key, *surfaces) == [], surfaces[0]


# ------------------------------------------------------------------------------------------ live calls
@pytest.fixture
def debug_logs(caplog, litellm_loaded):
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _log_text(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


@fixtures_ok(60)
@given(key=secret_keys(), offset=offsets, status=st.sampled_from([400, 404, 500, 503]),
       stream=st.booleans())
def test_an_upstream_that_echoes_the_key_leaks_nothing(key, offset, status, stream, fake_llm, debug_logs, capfd,
                                                      no_provider_keys):
    """Real litellm against a server that quotes the bearer token back at ``offset``: explicit api_key."""
    fake_llm.reset()
    debug_logs.clear()
    llm = get_llm_provider("litellm", api_key=key, api_base=fake_llm.openai_base, timeout=5, max_retries=0)
    model = f"openai/echo-key-{status}-{offset}"
    with pytest.raises(ProviderError) as info:
        if stream:
            "".join(llm.stream_chat("hello", model=model))
        else:
            llm.chat("hello", model=model)
    out = capfd.readouterr()
    assert fake_llm.requests[-1]["headers"]["authorization"] == f"Bearer {key}"  # the key really was echoed
    assert leaked(key, *_surfaces(info.value), _log_text(debug_logs), out.out, out.err) == []


@fixtures_ok(30)
@given(key=secret_keys(), offsets_=st.lists(offsets, min_size=1, max_size=4))
def test_batch_lines_and_cli_output_carry_no_key(key, offsets_, fake_llm, debug_logs, capfd, monkeypatch,
                                                 no_provider_keys):
    """The key in the environment (as in a container): local adapter batch lines, then the CLI's stderr."""
    from theory_modal.adapters import get_adapter
    from theory_modal.cli import main

    fake_llm.reset()
    debug_logs.clear()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
    payloads = [{"prompt": "hi", "mode": "live", "model": f"openai/echo-key-404-{o}"} for o in offsets_]
    lines = [json.dumps(r) for r in get_adapter("local").map("llm/litellm@1", payloads)]
    assert all('"error"' in line for line in lines)
    capfd.readouterr()
    rc = main(["run", "hi", "--mode", "live", "--model", f"openai/echo-key-404-{offsets_[0]}"])
    out = capfd.readouterr()
    assert rc == 1 and out.err.startswith("error: ")
    assert leaked(key, *lines, out.out, out.err, _log_text(debug_logs)) == []


@fixtures_ok(30)
@given(password=st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=10, max_size=30)
       .map(lambda p: "Pw9~" + p))  # a marker no message holds on its own ("ollama_chat" would)
def test_credentials_in_the_base_url_are_never_printed(password, monkeypatch, capfd, no_provider_keys, canary):
    """LLM_API_BASE=http://admin:PASS@host: not in the unreachable error, not in `doctor`."""
    from theory_modal.cli import main

    base = f"http://admin:{password}@127.0.0.1:9"  # port 9: nothing listens
    monkeypatch.setenv("LLM_API_BASE", base)
    capfd.readouterr()
    llm = get_llm_provider("litellm", timeout=2, max_retries=0)
    with pytest.raises(ProviderError) as info:
        llm.chat("hi", model="ollama_chat/qwen2.5:0.5b")
    main(["doctor", "--timeout", "0.5"])
    out = capfd.readouterr()
    texts = [*_surfaces(info.value), out.out, out.err]
    assert "127.0.0.1:9" in texts[0]  # the address is still named, only the userinfo is gone
    assert [t for t in texts if password in t or "admin:" in t] == []
