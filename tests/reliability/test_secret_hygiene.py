"""Secret hygiene beyond the fault matrix (which scans every cell): batch output, the payload that crosses the
Modal boundary, a payload that tries to carry a key, and an upstream that quotes the key back.

Every scan looks for the sentinel's core (``SENTINEL``), so a partial key counts as a leak; each scan is counted
for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from reliability_spec import FAST, PROMPT, REF, REPORT, SENTINEL_ARG, SENTINEL_ENV, RecordingAdapter

from providers import CredentialsError, InvalidRequestError, ProviderUnavailableError, get_llm_provider
from theory_modal.adapters import AdapterProvider, ModalAdapter
from theory_modal.wire import Request

# One batch item per kind of outcome; the expected result kind for each, in input order.
BATCH = [
    ({"prompt": PROMPT, "mode": "live", "model": "openai/gpt-4o-mini"}, None),
    ({"prompt": PROMPT, "mode": "live", "model": "openai/error-401"}, "credentials"),
    ({"prompt": PROMPT, "mode": "live", "model": "openai/error-404"}, "model_not_found"),
    ({"prompt": PROMPT, "mode": "live", "model": "openai/ctx-overflow"}, "context_window_exceeded"),
    ({"prompt": PROMPT, "mode": "live", "model": "openai/error-429-ra60"}, "rate_limited"),
    ({"prompt": PROMPT, "mode": "live", "model": "openai/error-500"}, "unavailable"),
    ({"prompt": PROMPT, "mode": "live", "model": "openai/reset"}, "unavailable"),
    ({"prompt": PROMPT, "mode": "live", "model": "ollama_chat/missing"}, "model_not_found"),
    ({"prompt": PROMPT, "mode": "live", "api_key": SENTINEL_ARG}, "invalid_request"),  # a key smuggled in
    ({"prompt": PROMPT, "mode": "live", "options": {"api_key": SENTINEL_ARG}}, "invalid_request"),
]


@pytest.fixture
def live_env(fake_llm, sentinel_env, live_runtime, monkeypatch):
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.openai_base)
    monkeypatch.setenv("LLM_API_BASE", fake_llm.ollama_base)


def test_batch_output_carries_no_key(capfd, live_env, debug_logging, secret_scan, fake_llm):
    adapter = RecordingAdapter()
    results = list(adapter.map(REF, [payload for payload, _ in BATCH], concurrency=8))

    assert [r["index"] for r in results] == list(range(len(BATCH)))  # one result per input, in order
    for result, (payload, kind) in zip(results, BATCH):
        if kind is None:
            assert result["text"] == f"echo: {PROMPT}" and "error" not in result
        else:
            assert result["error"]["kind"] == kind, result
            assert result["ref"] == REF
    assert "api_key" in results[-2]["error"]["message"]  # refused, naming the field but not its value
    assert all(r["headers"]["authorization"] == f"Bearer {SENTINEL_ENV}"
               for r in fake_llm.requests if r["path"] == "/v1/chat/completions")

    secret_scan("batch output", json.dumps(results))
    secret_scan("Modal payload", json.dumps(adapter.bodies))
    secret_scan.output(debug_logging, capfd)
    REPORT.secret_tests.add("batch output")


def test_the_modal_payload_never_carries_a_key(capfd, live_env, debug_logging, secret_scan):
    """Keys come from the container's environment (Modal Secrets), never from the payload: what the adapter
    sends is the validated request and nothing else, for every call the provider contract offers."""
    adapter = RecordingAdapter()
    llm = AdapterProvider(adapter, REF, mode="live")
    replies = [llm.chat(PROMPT, temperature=0.1, system="be brief"), asyncio.run(llm.achat(PROMPT))]
    stream = llm.stream_chat(PROMPT)
    assert "".join(stream) == f"echo: {PROMPT}"
    replies.append(stream.reply)

    assert len(adapter.bodies) == 3
    for body in adapter.bodies:
        assert set(body) <= {"prompt", "model", "options", "attachments", "mode"}
        assert Request.from_dict(body).to_dict() == body  # exactly the validated request
        secret_scan("Modal payload", json.dumps(body))
    # The Modal adapter builds the very same body (the shared Adapter._prepare) before calling .remote().
    payload = {"prompt": PROMPT, "mode": "live", "model": "openai/gpt-4o-mini"}
    assert ModalAdapter()._prepare(REF, payload)[1] == RecordingAdapter()._prepare(REF, payload)[1]
    secret_scan("reply", [r.to_dict() for r in replies])
    secret_scan.output(debug_logging, capfd)
    REPORT.secret_tests.add("modal payload")


@pytest.mark.parametrize("payload", [
    {"prompt": PROMPT, "api_key": SENTINEL_ARG},
    {"prompt": PROMPT, "options": {"api_key": SENTINEL_ARG}},
    {"prompt": PROMPT, "options": {"api_base": SENTINEL_ARG}},
], ids=["field", "option", "option-api_base"])
def test_a_payload_smuggling_a_key_is_refused_without_echoing_it(payload, capfd, live_env, debug_logging,
                                                                   secret_scan):
    adapter = RecordingAdapter()
    with pytest.raises(InvalidRequestError) as info:
        adapter.run(REF, payload)
    assert adapter.bodies == [], "refused before anything was sent"
    secret_scan.error(info.value)
    secret_scan.output(debug_logging, capfd)
    REPORT.secret_tests.add("key smuggled into a payload")


# ------------------------------------------------------------------ an upstream that quotes the key back
class _EchoKeyHandler(BaseHTTPRequestHandler):
    """A hostile upstream: its error body quotes the Authorization header and the bare key."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        auth = self.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ")
        status = 401 if self.path.startswith("/401/") else 500
        message = f"rejected {auth} (key={key}); see ?api_key={key}"
        body = json.dumps({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.fixture
def echo_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.mark.parametrize("status, error", [(500, ProviderUnavailableError), (401, CredentialsError)])
def test_an_upstream_quoting_the_key_back_is_redacted(status, error, echo_server, sentinel_env, secret_scan):
    """Our messages are built from upstream text through ``redact``. (litellm's own verbose output and
    httpcore's header logs print upstream bodies verbatim, so this test scans our surfaces only.)"""
    base = f"{echo_server}/401/v1" if status == 401 else f"{echo_server}/v1"
    llm = get_llm_provider("litellm", api_base=base, api_key=SENTINEL_ARG, retry=FAST, timeout=5)
    calls = {
        "chat": lambda: llm.chat(PROMPT),
        "stream_chat": lambda: "".join(llm.stream_chat(PROMPT)),
        "achat": lambda: asyncio.run(llm.achat(PROMPT)),
    }
    for name, call in calls.items():
        with pytest.raises(error) as info:
            call()
        assert info.value.status_code == status
        secret_scan.error(info.value)
    REPORT.secret_tests.add("key-echoing upstream")
