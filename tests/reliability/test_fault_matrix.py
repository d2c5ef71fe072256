"""Fault injection: every scenario crossed with every call, each outcome asserted and recorded for the doc.

A cell passes when the call ends the way its scenario says (a reply after N attempts, or the exact error class
with an actionable message and N attempts), the fake server saw exactly the attempts claimed, the call ended
within its time bound, and no sentinel key reached any surface (with debug logging on).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from reliability_spec import (
    CALLS,
    FAST,
    PROMPT,
    REF,
    REPLY,
    REPORT,
    SCENARIOS,
    SENTINEL_ARG,
    SENTINEL_ENV,
    STREAMS,
    Cell,
    RecordingAdapter,
    Scenario,
    closed_port,
    normalize,
    outcome_text,
)

from providers import ProviderError, get_llm_provider
from theory_modal.adapters import LocalAdapter


@dataclass
class Observed:
    reply: dict[str, Any] | None = None
    chunks: list[str] = field(default_factory=list)
    error: BaseException | None = None
    elapsed: float = 0.0
    stream_unfinished: bool | None = None  # a failed stream must not pretend to be done


def run_direct(call: str, llm) -> Observed:
    obs = Observed()
    stream = None
    t0 = time.monotonic()
    try:
        if call == "chat":
            obs.reply = llm.chat(PROMPT).to_dict()
        elif call == "achat":
            obs.reply = asyncio.run(llm.achat(PROMPT)).to_dict()
        elif call == "stream_chat":
            stream = llm.stream_chat(PROMPT)
            for chunk in stream:
                obs.chunks.append(chunk)
            obs.reply = stream.reply.to_dict()
        elif call == "astream_chat":

            async def consume():
                nonlocal stream
                stream = llm.astream_chat(PROMPT)
                async for chunk in stream:
                    obs.chunks.append(chunk)
                return stream.reply.to_dict()

            obs.reply = asyncio.run(consume())
        else:  # pragma: no cover
            raise AssertionError(call)
    except ProviderError as exc:
        obs.error = exc
    obs.elapsed = time.monotonic() - t0
    if obs.error is not None and stream is not None:
        obs.stream_unfinished = not stream.done
        with pytest.raises(RuntimeError, match="has not finished"):
            stream.reply
    return obs


def run_adapter(call: str, adapter: LocalAdapter, model: str) -> Observed:
    obs = Observed()
    payload = {"prompt": PROMPT, "mode": "live", "model": model}
    run = None
    t0 = time.monotonic()
    try:
        if call == "adapter.run":
            obs.reply = adapter.run(REF, payload)
        else:
            run = adapter.stream(REF, payload)
            for chunk in run:
                obs.chunks.append(chunk)
            obs.reply = run.response
    except ProviderError as exc:
        obs.error = exc
    obs.elapsed = time.monotonic() - t0
    if obs.error is not None and run is not None:
        with pytest.raises(RuntimeError, match="has not finished"):
            run.response
        obs.stream_unfinished = True
    return obs


@pytest.fixture(scope="module", autouse=True)
def warm(litellm_loaded, _fake_llm_server):
    """Pay the one-off costs (litellm's first call, importing the Modal app) before any cell's clock starts."""
    llm = get_llm_provider("litellm", api_base=_fake_llm_server.openai_base, api_key="sk-warmup-000000", timeout=5)
    llm.chat("warm up")
    "".join(llm.stream_chat("warm up"))
    asyncio.run(llm.achat("warm up"))
    import theory_modal.app  # noqa: F401

    _fake_llm_server.reset()


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.id)
def test_fault_cell(sc: Scenario, call: str, capfd, fake_llm, sentinel_env, debug_logging, secret_scan,
                    live_runtime, monkeypatch):
    expect = sc.expect_for(call)
    base = f"http://127.0.0.1:{closed_port()}/v1" if sc.refused else fake_llm.openai_base
    if sc.script:
        fake_llm.script(*sc.script)

    adapter = None
    if call.startswith("adapter."):
        # Live mode, configured from the environment the way a Modal container is.
        monkeypatch.setenv("OPENAI_API_BASE", base)
        monkeypatch.setenv("LLM_API_BASE", fake_llm.ollama_base)
        if sc.timeout is not None:  # live mode has no timeout setting: give the runtime's provider this one
            live_runtime._providers[("litellm", "live")] = get_llm_provider("litellm", timeout=sc.timeout)
        adapter = RecordingAdapter()
        obs = run_adapter(call, adapter, sc.model)
        sent_key = SENTINEL_ENV
    else:
        llm = get_llm_provider("litellm", model_default=sc.model, api_key=SENTINEL_ARG, retry=FAST,
                               timeout=sc.timeout or 5.0, api_base=fake_llm.ollama_base if sc.ollama else base)
        obs = run_direct(call, llm)
        sent_key = SENTINEL_ARG

    hits = fake_llm.hits(sc.path)
    err = obs.error

    # ---- the outcome
    if expect.error is None:
        assert err is None, f"expected a reply, got {type(err).__name__}: {err}"
        assert obs.reply["text"] == REPLY
        if call in STREAMS:
            assert "".join(obs.chunks) == REPLY and len(obs.chunks) > 1
        assert hits == expect.attempts, "server hits = attempts"
        attempts = hits
    else:
        assert err is not None, f"expected {expect.error.__name__}, got a reply: {obs.reply}"
        assert type(err) is expect.error, f"expected {expect.error.__name__}, got {type(err).__name__}: {err}"
        assert isinstance(err, RuntimeError)
        for fragment in expect.says:
            assert fragment in str(err), f"message lacks {fragment!r}: {err}"
        assert err.attempts == expect.attempts
        assert hits == (expect.attempts if expect.hits is None else expect.hits), "server hits"
        assert err.to_dict()["attempts"] == expect.attempts
        if expect.retry_after is not None:
            assert err.retry_after == expect.retry_after
        if call in STREAMS:
            assert obs.stream_unfinished, "a failed stream must not look finished"
            if expect.mid_stream:
                assert obs.chunks == ["echo:"], "the first chunk reached the caller before the cut"
                assert "".join(obs.chunks) != REPLY, "and the reply is visibly incomplete"
            else:
                assert obs.chunks == [], "a stream failing before its first chunk delivers nothing"
        attempts = err.attempts

    # ---- the time bound
    bound = sc.bound_for(call)
    assert obs.elapsed <= bound, f"took {obs.elapsed:.2f}s, bound {bound}s"
    assert obs.elapsed >= sc.min_s, f"took {obs.elapsed:.2f}s: the Retry-After wait did not happen"

    # ---- secret hygiene, with debug logging on
    if hits and not sc.ollama:
        auths = {r["headers"].get("authorization") for r in fake_llm.requests if r["path"] == sc.path}
        assert auths == {f"Bearer {sent_key}"}, "the sentinel key really was sent, so not finding it means something"
    if err is not None:
        secret_scan.error(err)
    else:
        secret_scan("reply", {"reply": obs.reply, "chunks": obs.chunks})
    secret_scan.output(debug_logging, capfd)
    if adapter is not None:
        assert adapter.bodies == [{"prompt": PROMPT, "mode": "live", "model": sc.model}]
        secret_scan("Modal payload", json.dumps(adapter.bodies))

    REPORT.cells[(sc.id, call)] = Cell(
        outcome=outcome_text(expect, error=err, attempts=attempts, chunks=len(obs.chunks), note=sc.note),
        bound_s=bound,
        message=normalize(str(err)) if err is not None else None,
    )
