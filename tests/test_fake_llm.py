"""The loopback fake OpenAI + Ollama server, over real HTTP: raw clients, and the real litellm."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm  # noqa: E402
from litellm.exceptions import MidStreamFallbackError  # noqa: E402

from theory_modal.testing.fake_llm import FakeLLMServer, mask_key, parse_scenario  # noqa: E402

litellm.suppress_debug_info = True

HELLO = [{"role": "user", "content": "hello brave new world"}]
ECHO = "echo: hello brave new world"
CHAT = "/v1/chat/completions"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def _server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(_server):
    _server.reset()
    yield _server
    _server.reset()


def oa(srv: FakeLLMServer, model: str = "openai/gpt-4o-mini", **kw):
    args = dict(api_base=srv.openai_base, api_key="sk-test", max_retries=0, timeout=5, messages=HELLO)
    return litellm.completion(model=model, **{**args, **kw})


def ol(srv: FakeLLMServer, model: str = "ollama_chat/qwen2.5:0.5b", **kw):
    args = dict(api_base=srv.ollama_base, api_key="sk-test", max_retries=0, timeout=5, messages=HELLO)
    return litellm.completion(model=model, **{**args, **kw})


def usage_of(chunks) -> tuple[int, int]:
    (u,) = [c.usage for c in chunks if getattr(c, "usage", None)]
    return u.prompt_tokens, u.completion_tokens


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def post(srv: FakeLLMServer, path: str, body, headers=None) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, headers=headers or {}, timeout=5)


def raw_post(srv: FakeLLMServer, path: str, body) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return conn.getresponse()


# ------------------------------------------------------------------ happy paths through litellm
def test_openai_non_streaming(srv):
    r = oa(srv)
    assert r.choices[0].message.content == ECHO and r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (4, 5, 9)
    (req,) = srv.requests
    assert req["method"] == "POST" and req["path"] == CHAT and req["scenario"] is None
    assert req["headers"]["authorization"] == "Bearer sk-test"
    assert req["body"] == {"model": "gpt-4o-mini", "messages": HELLO}


def test_openai_streaming_with_usage(srv):
    chunks = list(oa(srv, stream=True, stream_options={"include_usage": True}))
    assert text_of(chunks) == ECHO
    assert usage_of(chunks) == (4, 5)
    assert [c.choices[0].delta.content for c in chunks if c.choices][:3] == ["", "echo:", " hello"]


def test_ollama_chat_non_streaming_and_streaming(srv):
    r = ol(srv)
    assert r.choices[0].message.content == ECHO
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (4, 5)
    chunks = list(ol(srv, stream=True, stream_options={"include_usage": True}))
    assert text_of(chunks) == ECHO and usage_of(chunks) == (4, 5)
    chat = [r for r in srv.requests if r["path"] == "/api/chat"]
    assert [r["body"]["stream"] for r in chat] == [False, True]
    assert srv.hits("/api/chat") == 2  # litellm may also POST /api/show (cached per model per process)


# ------------------------------------------------------------------ wire format, raw clients
def test_openai_wire_shape_and_sse_stream(srv):
    body = post(srv, CHAT, {"model": "m", "messages": HELLO}).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "m"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ECHO}, "logprobs": None,
                                "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}

    resp = raw_post(srv, CHAT, {"model": "m", "messages": HELLO, "stream": True})
    assert resp.getheader("transfer-encoding") == "chunked"
    assert resp.getheader("content-type").startswith("text/event-stream")
    events = [e for e in resp.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)  # not asked for


def test_ollama_streams_ndjson_by_default_and_generate_counts_words(srv):
    resp = raw_post(srv, "/api/generate", {"model": "qwen2.5:0.5b", "prompt": "one two three"})
    assert resp.getheader("content-type") == "application/x-ndjson"
    lines = [json.loads(x) for x in resp.read().splitlines()]
    assert "".join(x["response"] for x in lines) == "echo: one two three"
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop" and not any(x["done"] for x in lines[:-1])
    assert (final["prompt_eval_count"], final["eval_count"]) == (3, 4) and final["total_duration"] > 0
    single = post(srv, "/api/chat", {"model": "x", "messages": HELLO, "stream": False}).json()
    assert single["message"] == {"role": "assistant", "content": ECHO} and single["done"] is True
    assert (single["prompt_eval_count"], single["eval_count"]) == (4, 5)


def test_model_listing_and_show_routes(srv):
    assert "gpt-4o-mini" in [m["id"] for m in httpx.get(srv.openai_base + "/models").json()["data"]]
    assert "qwen2.5:0.5b" in [m["name"] for m in httpx.get(srv.url + "/api/tags").json()["models"]]
    show = post(srv, "/api/show", {"name": "qwen2.5:0.5b"}).json()
    assert {"modelfile", "parameters", "template", "details", "model_info"} <= set(show)
    assert {"format", "family", "parameter_size", "quantization_level"} <= set(show["details"])
    missing = post(srv, "/api/show", {"name": "missing"})
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "missing" not found, try pulling it first'}
    assert post(srv, "/nope", {}).status_code == 404


def test_chunks_reply_template_and_content_parts():
    with FakeLLMServer(reply="[{model}] {prompt}", chunks=3) as srv:
        msgs = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "look at"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                                             {"type": "text", "text": "this"}]}]
        chunks = list(oa(srv, "openai/m1", messages=msgs, stream=True, stream_options={"include_usage": True}))
        content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(content) == 3 and "".join(content) == "[m1] look at this"
        assert usage_of(chunks) == (5, 4)  # system 2 + text parts 3; reply 4
        r = oa(srv, "openai/m1", messages=msgs)
        assert r.choices[0].message.content == "[m1] look at this" and r.usage.prompt_tokens == 5


def test_latency_is_slept_before_answering():
    with FakeLLMServer(latency=0.2) as srv:
        t0 = time.monotonic()
        assert post(srv, CHAT, {"model": "m", "messages": HELLO}).status_code == 200
        assert time.monotonic() - t0 >= 0.19


# ------------------------------------------------------------------ scenario selection
def test_script_then_success_counts_hits(srv):
    srv.script("error-500", "error-500")
    for _ in range(2):
        with pytest.raises(litellm.InternalServerError):
            oa(srv)
    assert oa(srv).choices[0].message.content == ECHO
    assert srv.hits(CHAT) == 3 == srv.hits()
    assert [r["scenario"] for r in srv.requests] == ["error-500", "error-500", None]


def test_scenario_priority_header_then_script_then_model(srv):
    srv.script("error-502")
    r = post(srv, CHAT, {"model": "error-404", "messages": HELLO}, {"x-fake-scenario": "error-503"})
    assert r.status_code == 503  # the header wins and leaves the script alone
    assert post(srv, CHAT, {"model": "error-404", "messages": HELLO}).status_code == 502
    assert post(srv, CHAT, {"model": "error-404", "messages": HELLO}).status_code == 404
    assert post(srv, CHAT, {"model": "error-404", "messages": HELLO}, {"x-fake-scenario": "ok"}).status_code == 200
    assert post(srv, CHAT, {"model": "m", "messages": HELLO}, {"x-fake-scenario": "bogus"}).status_code == 400
    with pytest.raises(ValueError):
        srv.script("bogus")
    srv.script("error-500")
    post(srv, "/api/show", {"name": "m"})  # show, tags and introspection do not consume the script
    httpx.get(srv.url + "/api/tags")
    assert post(srv, "/api/chat", {"model": "m", "messages": HELLO, "stream": False}).status_code == 500
    srv.script("error-500")
    srv.reset()
    assert srv.hits() == 0 and post(srv, CHAT, {"model": "m", "messages": HELLO}).status_code == 200


def test_parse_scenario_and_mask_key():
    assert parse_scenario("error-429").retry_after == 1 and parse_scenario("error-503").retry_after == 1
    assert parse_scenario("error-500").retry_after is None
    assert parse_scenario("error-429-noretry").retry_after is None
    assert parse_scenario("error-429-ra7").retry_after == 7
    assert parse_scenario("hang").seconds == 30 and parse_scenario("hang-2").seconds == 2
    assert parse_scenario("gpt-4o-mini") is None and parse_scenario("error-200") is None
    assert mask_key("sk-wrong-key-0123456789") == "sk-****6789"
    assert "abc" not in mask_key("abc")


# ------------------------------------------------------------------ error scenarios
def test_429_retry_after_headers_and_bodies(srv):
    cases = {"error-429": "1", "error-429-noretry": None, "error-429-ra7": "7", "error-503": "1", "error-500": None}
    for model, ra in cases.items():
        r = post(srv, CHAT, {"model": model, "messages": HELLO})
        assert r.headers.get("retry-after") == ra, model
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = post(srv, "/api/chat", {"model": "error-429", "messages": HELLO})
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and isinstance(r.json()["error"], str)
    with pytest.raises(litellm.RateLimitError) as info:
        oa(srv, "openai/error-429")
    assert info.value.status_code == 429 and srv.hits(CHAT) == 6  # max_retries=0: one attempt


@pytest.mark.parametrize("model, exc", [
    ("openai/error-400", litellm.BadRequestError),
    ("openai/error-403", litellm.APIError),  # not PermissionDeniedError on openai/
    ("openai/error-404", litellm.NotFoundError),
    ("openai/error-502", litellm.BadGatewayError),
    ("openai/error-503", litellm.ServiceUnavailableError),
    ("openai/ctx-overflow", litellm.ContextWindowExceededError),
    ("openai/missing", litellm.NotFoundError),
    ("ollama_chat/error-403", litellm.PermissionDeniedError),
    ("ollama_chat/error-500", litellm.InternalServerError),
    ("ollama_chat/missing", litellm.NotFoundError),
])
def test_status_scenarios_map_to_litellm_classes(srv, model, exc):
    call = oa if model.startswith("openai/") else ol
    with pytest.raises(exc) as info:
        call(srv, model)
    assert type(info.value) is exc
    if model == "ollama_chat/missing":
        assert 'model \\"missing\\" not found, try pulling it first' in str(info.value)
        assert srv.hits("/api/chat") == 1
    if model == "openai/ctx-overflow":
        assert "maximum context length is 128000 tokens" in str(info.value)


def test_require_key():
    key = "sk-good-key-123456"
    with FakeLLMServer(require_key=key) as srv:
        wrong = "sk-wrong-key-0123456789"
        with pytest.raises(litellm.AuthenticationError):
            oa(srv, api_key=wrong)
        r = post(srv, CHAT, {"model": "m", "messages": HELLO}, {"Authorization": f"Bearer {wrong}"})
        err = r.json()["error"]
        assert r.status_code == 401 and err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
        assert wrong not in r.text and "sk-****6789" in err["message"]
        assert post(srv, CHAT, {"model": "m", "messages": HELLO}).status_code == 401  # no key at all
        assert httpx.get(srv.openai_base + "/models").status_code == 401
        assert oa(srv, api_key=key).choices[0].message.content == ECHO
        assert post(srv, "/api/chat", {"model": "m", "messages": HELLO, "stream": False}).status_code == 200
        assert srv.requests[0]["scenario"] is None and srv.hits(CHAT) == 4


def test_hang_past_timeout_raises_timeout_quickly(srv):
    for call, model in ((oa, "openai/hang-2"), (ol, "ollama_chat/hang-2")):
        t0 = time.monotonic()
        with pytest.raises(litellm.Timeout):
            call(srv, model, timeout=0.5)
        assert time.monotonic() - t0 < 1.5


def test_reset_closes_without_a_response(srv):
    with pytest.raises(ConnectionResetError):
        raw_post(srv, CHAT, {"model": "reset", "messages": HELLO})
    with pytest.raises(litellm.InternalServerError, match="Connection error"):
        oa(srv, "openai/reset")
    with pytest.raises(litellm.APIConnectionError, match="Connection reset by peer"):
        ol(srv, "ollama_chat/reset")


def test_cut_stream(srv):
    resp = raw_post(srv, CHAT, {"model": "cut-stream", "messages": HELLO})
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    got = []
    with pytest.raises(MidStreamFallbackError):
        for c in oa(srv, "openai/cut-stream", stream=True):
            got.append(c.choices[0].delta.content)
    assert got == ["", "echo:"]
    with pytest.raises(litellm.InternalServerError):  # non-streaming through the openai SDK
        oa(srv, "openai/cut-stream")
    got = []
    with pytest.raises(MidStreamFallbackError):
        for c in ol(srv, "ollama_chat/cut-stream", stream=True):
            got.append(c.choices[0].delta.content)
    assert got == ["echo:", " hello"]
    with pytest.raises(litellm.APIConnectionError, match="peer closed connection"):
        ol(srv, "ollama_chat/cut-stream")


def test_malformed_json(srv):
    r = post(srv, CHAT, {"model": "malformed-json", "messages": HELLO})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        r.json()
    with pytest.raises(litellm.InternalServerError, match="Expecting value"):
        oa(srv, "openai/malformed-json")
    with pytest.raises(MidStreamFallbackError):
        list(oa(srv, "openai/malformed-json", stream=True))
    with pytest.raises(litellm.APIConnectionError, match="Expecting value"):
        ol(srv, "ollama_chat/malformed-json")
    # litellm's Ollama stream parser skips the broken line: an empty, "finished" stream, no error
    chunks = list(ol(srv, "ollama_chat/malformed-json", stream=True))
    assert text_of(chunks) == ""


def test_no_choices(srv):
    r = oa(srv, "openai/no-choices")  # litellm does not raise: the caller must guard choices[0]
    assert r.choices == [] and r.usage.completion_tokens == 5
    with pytest.raises(MidStreamFallbackError, match="finish_reason"):
        list(oa(srv, "openai/no-choices", stream=True))
    assert "message" not in post(srv, "/api/chat", {"model": "no-choices", "messages": HELLO, "stream": False}).json()
    with pytest.raises(litellm.APIConnectionError):
        ol(srv, "ollama_chat/no-choices")
    with pytest.raises(litellm.BadRequestError, match="message"):
        list(ol(srv, "ollama_chat/no-choices", stream=True))


def test_slow_stream_and_trickle_are_still_valid(srv):
    chunks = list(oa(srv, "openai/slow-stream", stream=True, stream_options={"include_usage": True}))
    assert text_of(chunks) == ECHO and usage_of(chunks) == (4, 5)
    assert ol(srv, "ollama_chat/trickle", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content \
        == "echo: hi"
    t0 = time.monotonic()
    body = post(srv, CHAT, {"model": "trickle", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert body["choices"][0]["message"]["content"] == "echo: hi" and time.monotonic() - t0 > 0.1


# ------------------------------------------------------------------ introspection, lifecycle, CLI
def test_http_introspection(srv):
    assert httpx.post(srv.url + "/__script", json={"scenarios": ["error-500", "ok"]}).json() == {"ok": True}
    assert httpx.post(srv.url + "/__script", json={"scenarios": ["bogus"]}).status_code == 400
    assert post(srv, CHAT, {"model": "m", "messages": HELLO}).status_code == 500
    assert post(srv, CHAT, {"model": "error-404", "messages": HELLO}).status_code == 200
    post(srv, "/api/show", {"name": "m"})
    assert httpx.get(srv.url + "/__stats").json() == {"hits": 3}
    assert httpx.get(srv.url + "/__stats", params={"prefix": "/v1"}).json() == {"hits": 2}
    reqs = httpx.get(srv.url + "/__requests").json()
    assert [(r["path"], r["scenario"]) for r in reqs] == [(CHAT, "error-500"), (CHAT, "ok"), ("/api/show", None)]
    assert httpx.post(srv.url + "/__reset").json() == {"ok": True}
    assert httpx.get(srv.url + "/__stats").json() == {"hits": 0} and srv.requests == []


def test_stop_ends_a_hanging_request_and_leaves_no_thread():
    srv = FakeLLMServer().start()
    prefix = f"fake-llm-{srv.port}-"
    assert srv.url == f"http://127.0.0.1:{srv.port}" and srv.port > 0
    assert srv.openai_base == srv.url + "/v1" and srv.ollama_base == srv.url
    outcome: list = []

    def client():
        try:
            outcome.append(raw_post(srv, CHAT, {"model": "hang", "messages": HELLO}).status)
        except (OSError, http.client.HTTPException) as e:
            outcome.append(e)

    t = threading.Thread(target=client)
    t.start()
    idle = http.client.HTTPConnection(srv.host, srv.port, timeout=5)  # an idle keep-alive connection too
    idle.request("GET", "/api/tags")
    idle.getresponse().read()
    deadline = time.monotonic() + 2
    while srv.hits(CHAT) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(th.name.startswith(prefix) for th in threading.enumerate())
    t0 = time.monotonic()
    srv.stop()
    t.join(2)
    assert not t.is_alive() and outcome and time.monotonic() - t0 < 1.5
    assert [th.name for th in threading.enumerate() if th.name.startswith(prefix)] == []
    srv.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=1)
    idle.close()


def test_cli_listens_serves_and_exits_cleanly_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "theory_modal.testing.fake_llm", "--port", "0", "--reply",
                             "cli: {prompt}", "--latency-ms", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("LISTENING 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        r = httpx.post(f"http://127.0.0.1:{port}{CHAT}", json={"model": "m", "messages": HELLO}, timeout=5)
        assert r.json()["choices"][0]["message"]["content"] == "cli: hello brave new world"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert proc.stdout.read() == "" and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
