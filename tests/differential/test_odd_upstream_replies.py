"""Odd 200 replies from an OpenAI-compatible upstream (shapes the fake server does not script), on both paths.

Invariant: a non-streaming call never lets a non-ProviderError escape, never returns a reply whose text is not a
string, and fails with the same error class, attempts, status and retryability on the fast path as on LiteLLM.
"""

from __future__ import annotations

import json

import pytest
from canned import CannedServer
from harness import run_call
from reliability_spec import FAST

from providers import get_llm_provider

OK = {"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def _with(**over):
    return {**OK, **over}


BODIES = {
    "no-message": _with(choices=[{"index": 0, "finish_reason": "stop"}]),
    "content-list": _with(choices=[{"index": 0, "message": {"role": "assistant", "content": [{"type": "text",
                                                                                             "text": "a"}]},
                                    "finish_reason": "stop"}]),
    "choices-null": _with(choices=None),
    "no-choices-key": {k: v for k, v in OK.items() if k != "choices"},
    "huge-usage": _with(usage={"prompt_tokens": 10**30, "completion_tokens": 10**30, "total_tokens": 2 * 10**30}),
    "null-content": _with(choices=[{"index": 0, "message": {"role": "assistant", "content": None},
                                    "finish_reason": "stop"}]),
}


@pytest.fixture(scope="module")
def canned():
    with CannedServer() as srv:
        yield srv


def _outcome(srv, fast: bool, call: str):
    llm = get_llm_provider("litellm", fast_path=fast, model_default="openai/gpt-4o-mini", api_base=srv.base,
                           api_key="sk-odd-0000000000", retry=FAST, timeout=5.0)
    out = run_call(call, llm, "hello")  # a non-ProviderError raises here and fails the test
    if out.reply is not None:
        assert isinstance(out.reply["text"], str)
    return out.reply, None if out.error is None else (out.error[0], *out.error[2:])


@pytest.mark.parametrize("call", ["chat", "achat"])
@pytest.mark.parametrize("name", sorted(BODIES))
def test_odd_replies_end_as_a_provider_outcome_of_the_same_class_on_both_paths(name, call, canned, paths,
                                                                               no_provider_keys):
    canned.body = json.dumps(BODIES[name]).encode()
    assert _outcome(canned, True, call) == _outcome(canned, False, call)


@pytest.mark.parametrize("call", ["chat", "achat"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "litellm"])
@pytest.mark.parametrize("usage", [None, "absent", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}],
                         ids=["null", "absent", "zeros"])
def test_a_priced_reply_without_usage_costs_unknown_never_a_made_up_zero(usage, fast, call, canned):
    """Invariant: a billed model's reply that reports no usage has usd_micros None (unknown), on both paths, so a
    spend cap cannot count it as free; the same reply with usage is priced."""
    body = {k: v for k, v in OK.items() if k != "usage"} if usage == "absent" else _with(usage=usage)
    canned.status, canned.ctype, canned.body = 200, "application/json", json.dumps(body).encode()
    reply, error = _outcome(canned, fast, call)
    assert error is None and reply["usage"]["usd_micros"] is None
    canned.body = json.dumps(OK).encode()
    reply, error = _outcome(canned, fast, call)
    assert error is None and isinstance(reply["usage"]["usd_micros"], int) and reply["usage"]["usd_micros"] >= 0
