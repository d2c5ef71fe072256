"""A loopback fake of an OpenAI-compatible server and an Ollama server, in one stdlib HTTP server.

Used by hermetic tests of LLM provider wrappers (embedded, ``with FakeLLMServer() as srv``) and by benchmarks
(as a separate process: ``python -m theory_modal.testing.fake_llm --port 0`` prints ``LISTENING 127.0.0.1:<port>``).
It binds 127.0.0.1 only, speaks HTTP/1.1 keep-alive with TCP_NODELAY, and imports nothing outside the stdlib
(JSON for a schema comes from ``providers.schema_data``, stdlib-only too, imported when first needed).

Routes
    OpenAI:  POST /v1/chat/completions (and /chat/completions): JSON, or SSE when ``"stream": true``;
             GET /v1/models.  With ``require_key`` both need ``Authorization: Bearer <key>`` (else 401).
    Ollama:  POST /api/chat, POST /api/generate (NDJSON stream unless ``"stream": false``), POST /api/show,
             GET /api/tags.
    Introspection (not recorded): GET /__requests, GET /__stats[?prefix=/v1], POST /__reset,
             POST /__script with ``{"scenarios": [...]}``.

Replies are ``reply`` with ``{prompt}`` (the last user message's text; text parts joined by spaces) and
``{model}`` substituted.

Structured output and tools behave like a constrained real server. A request with a schema (OpenAI
``response_format`` ``json_schema``, or ``json_object`` with a ``schema`` as llama.cpp takes it, or with the
schema in the system message after "JSON Schema:"; Ollama ``format``) gets JSON generated from that schema.
A request with ``tools`` gets a call of the first tool (or the one ``tool_choice`` names) with arguments
generated from its ``parameters``, unless ``tool_choice`` is ``"none"`` or the last message is a tool result
(the last turn other than a user turn; then it answers in text, quoting that result: ``tool said: <content>``;
a result starting with "Error" makes it call the tool again). Streams send tool calls as deltas
(id and name first, then the arguments in two pieces). Token counts are whitespace words: prompt = words of all message text, completion =
words of the reply; streams report the same numbers. Streams send one chunk per word (leading spaces kept, so
the joined deltas equal the reply) or exactly ``chunks`` content chunks.

Scenarios apply to the chat/generate routes only. A request's scenario is, in priority order, the
``x-fake-scenario`` header, else the next name queued with ``script()`` (FIFO, one per request), else the model
name when it is a scenario name (``openai/error-429`` sends model ``error-429``). Error bodies follow each
family: OpenAI ``{"error": {"message", "type", "param", "code"}}``, Ollama ``{"error": "..."}``.

    ===================  ========================================================================
    ok                   answer normally (useful in a script: ``srv.script("error-500", "ok")``)
    error-<code>         that HTTP status (400..599); ``retry-after: 1`` on 429 and 503;
                         404 says the model does not exist (code model_not_found)
    error-<code>-noretry no Retry-After header (e.g. error-429-noretry)
    error-<code>-ra<N>   ``retry-after: N``
    ctx-overflow         400, code context_length_exceeded ("This model's maximum context length is ...")
    missing              404: Ollama ``model "<m>" not found, try pulling it first`` (also on /api/show);
                         OpenAI routes: code model_not_found
    hang, hang-<secs>    sleep (default 30 s; ends at once when the server stops), then answer normally
    reset                close the connection with no response, SO_LINGER 0 (the client sees a reset)
    cut-stream           streams: the first 2 events, then close with no terminator;
                         non-streaming: Content-Length larger than the body, then close
    malformed-json       200 application/json that is not JSON (streams: a broken SSE/NDJSON event)
    no-choices           200 valid JSON with ``"choices": []`` (Ollama: no ``message`` / ``response``)
    slow-stream          the response bytes (HTTP framing included) go 32 at a time, 2 ms apart; still valid
    trickle              the response bytes go 8 at a time, 5 ms apart (~1 s per OpenAI stream); still valid
    drip, drip-<secs>    headers at once, then the body ONE byte every <secs> (default 0.5): a per-read
                         timeout never fires, and a reply takes minutes (what a deadline must cut)
    endless[-<secs>]     streams: the first content event at once, then another every <secs> (default 0.5),
                         forever, never a finish; non-streaming: same as drip
    json-invalid         the reply text is ``{"oops": `` (not JSON, so it fails any schema)
    tool-invalid         a tool call whose arguments are not JSON (Ollama: a call of an unknown tool)
    echo-key-<code>-<N>  that HTTP status, with an error message that quotes the request's bearer token (or
                         Ollama's) after N characters of filler: an upstream that leaks the key back
    ===================  ========================================================================

A client that goes away mid-answer is recorded: ``disconnects`` lists each (scenario, path) whose write failed,
and ``wait_for_disconnects(n, timeout)`` waits for them, so tests can prove a closed stream released its upstream.

``latency`` is slept before each chat/generate answer; ``chunk_delay`` between stream events. Server threads
are daemons named ``fake-llm-<port>-*``; ``stop()`` wakes every sleep, closes every connection and joins them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeLLMServer", "Scenario", "parse_scenario", "count_words", "mask_key", "main"]

HOST = "127.0.0.1"
MODELS = ("gpt-4o-mini", "gpt-4o", "qwen2.5:0.5b", "llama3.2:1b")
_SIMPLE = {"ok", "ctx-overflow", "missing", "reset", "cut-stream", "malformed-json", "no-choices",
           "slow-stream", "trickle", "json-invalid", "tool-invalid"}
_INVALID_JSON = '{"oops": '
_SCHEMA_MARK = "JSON Schema:"
_ERROR_RE = re.compile(r"error-([45]\d\d)(?:-(noretry)|-ra(\d+))?")
_HANG_RE = re.compile(r"hang(?:-(\d+(?:\.\d+)?))?")
_DRIP_RE = re.compile(r"(drip|endless)(?:-(\d+(?:\.\d+)?))?")
_ECHO_RE = re.compile(r"echo-key-([45]\d\d)-(\d{1,6})")
_PACING = {"slow-stream": (32, 0.002), "trickle": (8, 0.005)}  # (bytes per write, pause after each)
_OPENAI_CHAT = ("/v1/chat/completions", "/chat/completions")
_CTX_MESSAGE = ("This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "200000 tokens. Please reduce the length of the messages.")


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "ok", "error", "hang" or the name of a simple scenario
    status: int = 200
    retry_after: int | None = None
    seconds: float = 0.0
    offset: int = 0


def parse_scenario(name: str | None) -> Scenario | None:
    """The scenario called ``name``, or None when it is not a scenario name."""
    if not name:
        return None
    if name in _SIMPLE:
        return Scenario(name, name)
    if m := _ERROR_RE.fullmatch(name):
        status = int(m.group(1))
        retry = int(m.group(3)) if m.group(3) else (1 if status in (429, 503) and not m.group(2) else None)
        return Scenario(name, "error", status, retry)
    if m := _ECHO_RE.fullmatch(name):
        return Scenario(name, "echo-key", int(m.group(1)), offset=int(m.group(2)))
    if m := _HANG_RE.fullmatch(name):
        return Scenario(name, "hang", seconds=float(m.group(1) or 30))
    if (m := _DRIP_RE.fullmatch(name)) and float(m.group(2) or 0.5) > 0:
        return Scenario(name, m.group(1), seconds=float(m.group(2) or 0.5))
    return None


def count_words(text: str) -> int:
    return len(text.split())


def mask_key(key: str) -> str:
    """Mask an API key the way OpenAI does in its 401 message: never the whole key."""
    if len(key) >= 12:
        return f"{key[:3]}****{key[-4:]}"
    return "****" + (key[-2:] if len(key) >= 6 else "")


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content-part list joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _split(text: str, n: int | None) -> list[str]:
    """Stream pieces of ``text``: exactly n pieces, or one per word with its leading whitespace kept."""
    if n:
        size, extra = divmod(len(text), n)
        cuts = [0]
        for i in range(n):
            cuts.append(cuts[-1] + size + (1 if i < extra else 0))
        return [text[a:b] for a, b in zip(cuts, cuts[1:])]
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)):]
    if rest:
        pieces = pieces[:-1] + [pieces[-1] + rest] if pieces else [rest]
    return pieces


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _instance(schema: Any, seed_text: str) -> Any:
    from providers.schema_data import generate, seed_for

    return generate(schema, seed_for(seed_text, json.dumps(schema, sort_keys=True)))


def _schema_in(messages: list[dict[str, Any]]) -> Any:
    """The JSON Schema a system message quotes after "JSON Schema:" (how JSON-mode instructions carry it)."""
    for m in messages:
        text = _text(m.get("content")) if m.get("role") == "system" else ""
        at = text.rfind(_SCHEMA_MARK)
        if at >= 0:
            try:
                return json.JSONDecoder().raw_decode(text[at + len(_SCHEMA_MARK):].lstrip())[0]
            except ValueError:
                return None
    return None


def _wanted_schema(openai: bool, body: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[bool, Any]:
    """(JSON asked for?, the schema if one was given)."""
    if openai:
        rf = body.get("response_format")
        if not isinstance(rf, dict) or rf.get("type") not in ("json_schema", "json_object"):
            return False, None
        if rf["type"] == "json_schema":
            return True, (rf.get("json_schema") or {}).get("schema")
        return True, rf.get("schema") or _schema_in(messages)
    fmt = body.get("format")
    if isinstance(fmt, dict):
        return True, fmt
    return (True, _schema_in(messages)) if fmt == "json" else (False, None)


def _answered(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The tool result the model should now use: the last turn other than a user turn, when it is a tool turn
    that is not an error report (after an error a model calls the tool again)."""
    for m in reversed(messages):
        if m.get("role") != "user":
            ok = m.get("role") == "tool" and not _text(m.get("content")).startswith("Error")
            return m if ok else None
    return None


def _tool_call(openai: bool, body: dict[str, Any], messages: list[dict[str, Any]], seed: str) -> dict[str, Any] | None:
    """The call to make ({"id", "name", "arguments": dict}), or None to answer in text."""
    tools = [t.get("function", t) for t in body.get("tools") or [] if isinstance(t, dict)]
    if not tools:
        return None
    choice = body.get("tool_choice")
    forced = isinstance(choice, dict) or choice == "required"
    if choice == "none" or (not forced and _answered(messages) is not None):
        return None
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else tools[0].get("name")
    tool = next((t for t in tools if t.get("name") == name), tools[0])
    args = _instance(tool.get("parameters") or {"type": "object"}, seed + tool.get("name", ""))
    from providers.schema_data import seed_for

    return {"id": f"call_fake{seed_for(seed) % 10**8:08d}", "name": tool.get("name"), "arguments": args}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: benchmarks open many connections at once
    block_on_close = False  # stop() shuts connections down and joins the workers itself, with a deadline

    def __init__(self, owner: FakeLLMServer, port: int) -> None:
        self.owner = owner
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.workers: set[threading.Thread] = set()
        self.abort: set[socket.socket] = set()  # connections to close with a reset
        self._ids = itertools.count(1)
        super().__init__((HOST, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name=f"fake-llm-{self.server_address[1]}-conn-{next(self._ids)}", daemon=True)
        with self.lock:
            self.workers = {w for w in self.workers if w.is_alive()}
            self.workers.add(t)
            self.conns.add(request)
        t.start()

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.conns.discard(request)
            abort = request in self.abort
            self.abort.discard(request)
        if abort:
            self.close_request(request)  # no FIN first: with SO_LINGER 0, close() sends RST
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients going away are not errors
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "fake-llm/1.0"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0] or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        self.pace: tuple[int, float] | None = None
        self.scenario: str | None = None  # for the disconnect record (a keep-alive handler serves many requests)
        self.endless = 0.0
        url = urlsplit(self.path)
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        try:
            if url.path.startswith("/__"):
                self._introspect(url.path, parse_qs(url.query), body)
            else:
                self._route(url.path, {k.lower(): v for k, v in self.headers.items()}, body)
        except OSError:  # the client went away, or stop() shut the connection down
            self.close_connection = True
            self.server.owner._disconnected(url.path, self.scenario)

    def _write(self, data: bytes) -> None:
        if self.pace is None:
            self.wfile.write(data)
            return
        size, pause = self.pace
        for i in range(0, len(data), size):
            self.wfile.write(data[i:i + size])
            self.server.owner._sleep(pause)

    def _send(self, status: int, data: bytes, ctype: str = "application/json",
              headers: Iterable[tuple[str, str]] = (), length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self._write(data)

    def _json(self, status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        self._send(status, _dumps(obj), headers=headers)

    def _stream(self, events: Iterable[bytes], ctype: str, cut: bool = False, pause: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        owner = self.server.owner
        for i, event in enumerate(events):
            if cut and i == 2:
                self.close_connection = True  # no terminating chunk: the body is incomplete
                return
            if i and (pause or owner.chunk_delay):
                owner._sleep(pause or owner.chunk_delay)
            self._write(b"%X\r\n%s\r\n" % (len(event), event))
        self._write(b"0\r\n\r\n")

    # ------------------------------------------------------------------ routing
    def _route(self, path: str, headers: dict[str, str], body: Any) -> None:
        owner = self.server.owner
        method = self.command
        model = str(body.get("model") or body.get("name") or "") if isinstance(body, dict) else ""
        openai = path in _OPENAI_CHAT or path == "/v1/models"
        if openai and owner.require_key is not None:
            auth = headers.get("authorization", "")
            if auth != f"Bearer {owner.require_key}":
                owner._record(method, path, headers, body, None)
                given = auth[7:] if auth.startswith("Bearer ") else ""
                msg = (f"Incorrect API key provided: {mask_key(given)}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys." if given else
                       "You didn't provide an API key. You need to provide your API key in an Authorization "
                       "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
                return self._json(401, {"error": {"message": msg, "type": "invalid_request_error",
                                                  "param": None, "code": "invalid_api_key"}})
        completion = method == "POST" and (path in _OPENAI_CHAT or path in ("/api/chat", "/api/generate"))
        name = None
        if completion:
            name = owner._pick_scenario(headers.get("x-fake-scenario"), model)
        elif path == "/api/show" and "missing" in (headers.get("x-fake-scenario"), model):
            name = "missing"
        owner._record(method, path, headers, body, name)
        scenario = parse_scenario(name) if name else None
        if name and scenario is None:
            return self._error(openai, 400, f"unknown fake scenario {name!r}", model)
        if method == "GET" and path == "/v1/models":
            return self._json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in MODELS]})
        if method == "GET" and path == "/api/tags":
            return self._json(200, {"models": [_ollama_tag(m) for m in MODELS]})
        if method == "POST" and path == "/api/show":
            if scenario:
                return self._error(False, 404, f'model "{model}" not found, try pulling it first', model)
            return self._json(200, _ollama_show(model))
        if not completion:
            return self._error(openai or path.startswith("/v1"), 404, f"Unknown path {path}", model)
        if not isinstance(body, dict):
            return self._error(openai, 400, "request body must be a JSON object", model)
        if owner.latency:
            owner._sleep(owner.latency)
        if scenario is not None and scenario.kind == "echo-key":
            auth = headers.get("authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else auth
            filler = ("upstream diagnostic text " * (scenario.offset // 25 + 1))[: scenario.offset]
            return self._error(openai, scenario.status, f"{filler}{token} was rejected by the gateway", model)
        self._complete(path, body, model, scenario)

    def _complete(self, path: str, body: dict[str, Any], model: str, scenario: Scenario | None) -> None:
        owner = self.server.owner
        openai = path in _OPENAI_CHAT
        stream = bool(body.get("stream")) if openai else body.get("stream", True) is not False
        kind = scenario.kind if scenario else "ok"
        self.scenario = scenario.name if scenario else None
        if kind == "hang":
            owner._sleep(scenario.seconds)  # type: ignore[union-attr]
        elif kind == "error":
            assert scenario is not None
            ra = [("Retry-After", str(scenario.retry_after))] if scenario.retry_after is not None else []
            return self._error(openai, scenario.status, f"Fake error {scenario.status} for model {model}", model, ra)
        elif kind == "ctx-overflow":
            return self._error(openai, 400, _CTX_MESSAGE, model, code="context_length_exceeded")
        elif kind == "missing":
            return self._error(openai, 404, f'model "{model}" not found, try pulling it first', model)
        elif kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.server.lock:
                self.server.abort.add(self.connection)
            self.close_connection = True
            return
        self.pace = _PACING.get(kind)
        if kind == "drip" or (kind == "endless" and not stream):
            self.pace = (1, scenario.seconds)  # type: ignore[union-attr]
        self.endless = scenario.seconds if kind == "endless" and stream else 0.0  # type: ignore[union-attr]

        if path == "/api/generate":
            prompt = str(body.get("prompt") or "")
            prompt_tokens = count_words(prompt) + count_words(str(body.get("system") or ""))
        else:
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            users = [m for m in messages if m.get("role") == "user"] or messages
            prompt = _text(users[-1].get("content")) if users else ""
            prompt_tokens = sum(count_words(_text(m.get("content"))) for m in messages)
        text = owner.reply.replace("{prompt}", prompt).replace("{model}", model)
        call = None
        if path != "/api/generate":
            call = _tool_call(openai, body, messages, f"{model}\x1f{prompt}\x1f{len(messages)}")
            json_wanted, schema = _wanted_schema(openai, body, messages)
            if call is not None and kind == "tool-invalid":
                call = {**call, "arguments": "{not json"} if openai else {**call, "name": "no_such_tool"}
            if call is not None:
                text = ""
            elif kind == "json-invalid":
                text = _INVALID_JSON
            elif json_wanted:
                text = json.dumps(_instance(schema, f"{model}\x1f{prompt}")) if schema is not None else "{}"
            elif body.get("tools") and (done := _answered(messages)) is not None:
                text += f" (tool said: {_text(done.get('content'))})"
        usage = (prompt_tokens, count_words(text) + (count_words(json.dumps(call["arguments"])) if call else 0))
        if openai:
            self._openai(body, model, text, usage, stream, kind, call)
        else:
            self._ollama("response" if path == "/api/generate" else "message", model, text, usage, stream, kind, call)

    def _error(self, openai: bool, status: int, message: str, model: str,
               headers: Iterable[tuple[str, str]] = (), code: str | None = None) -> None:
        if not openai:
            return self._json(status, {"error": message}, headers)
        if status == 404:
            code = code or "model_not_found"
            if message.startswith(("Fake error", "model ")):
                message = f"The model `{model}` does not exist or you do not have access to it."
        elif status == 429:
            code = code or "rate_limit_exceeded"
        elif status == 401:
            code = code or "invalid_api_key"
        etype = "requests" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        self._json(status, {"error": {"message": message, "type": etype, "param": None, "code": code}}, headers)

    # ------------------------------------------------------------------ OpenAI
    def _openai(self, body: dict[str, Any], model: str, text: str, usage: tuple[int, int],
                stream: bool, kind: str, call: dict[str, Any] | None = None) -> None:
        owner = self.server.owner
        cid, created = f"chatcmpl-fake{owner._next_id():06d}", int(time.time())
        usage_obj = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
        args = None
        if call is not None:
            args = call["arguments"] if isinstance(call["arguments"], str) else json.dumps(call["arguments"])
        finish = "tool_calls" if call is not None else "stop"
        if not stream:
            if kind == "malformed-json":
                return self._send(200, b'{"id": "' + cid.encode() + b'", "choices": [{"message": ')
            message: dict[str, Any] = {"role": "assistant", "content": text if call is None else None}
            if call is not None:
                message["tool_calls"] = [{"id": call["id"], "type": "function",
                                          "function": {"name": call["name"], "arguments": args}}]
            choices = [] if kind == "no-choices" else [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]
            data = _dumps({"id": cid, "object": "chat.completion", "created": created, "model": model,
                           "choices": choices, "usage": usage_obj, "system_fingerprint": "fp_fake"})
            if kind == "cut-stream":
                self.close_connection = True
                return self._send(200, data[: len(data) // 2], length=len(data))
            return self._send(200, data)

        def chunk(choices: list[Any], **extra: Any) -> bytes:
            return b"data: " + _dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                       "model": model, "system_fingerprint": "fp_fake",
                                       "choices": choices, **extra}) + b"\n\n"

        def delta(d: dict[str, Any], finish: str | None = None) -> bytes:
            return chunk([{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}])

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if kind == "malformed-json":
            events = [b'data: {"id": "' + cid.encode() + b'", "choices": [{"delta": \n\n']
        elif kind == "no-choices":
            events = [chunk([], **({"usage": usage_obj} if include_usage else {}))]
        elif self.endless:
            first = [delta({"role": "assistant", "content": ""}), delta({"content": _split(text, None)[0]})]
            return self._stream(itertools.chain(first, (delta({"content": " more"}) for _ in itertools.count())),
                                "text/event-stream; charset=utf-8", pause=self.endless)
        else:
            events = [delta({"role": "assistant", "content": "" if call is None else None})]
            events += [delta({"content": piece}) for piece in _split(text, owner.chunks)]
            if call is not None and args is not None:
                half = len(args) // 2
                events.append(delta({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                     "function": {"name": call["name"], "arguments": ""}}]}))
                for piece in (args[:half], args[half:]):
                    events.append(delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            events.append(delta({}, finish))
            if include_usage:
                events.append(chunk([], usage=usage_obj))
        events.append(b"data: [DONE]\n\n")
        self._stream(events, "text/event-stream; charset=utf-8", cut=kind == "cut-stream")

    # ------------------------------------------------------------------ Ollama
    def _ollama(self, field: str, model: str, text: str, usage: tuple[int, int], stream: bool, kind: str,
                call: dict[str, Any] | None = None) -> None:
        owner = self.server.owner
        created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

        def obj(piece: str, done: bool) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": created_at}
            if kind != "no-choices":
                out[field] = {"role": "assistant", "content": piece} if field == "message" else piece
                if call is not None and field == "message" and (done if not stream else not done):
                    out[field]["tool_calls"] = [{"function": {"name": call["name"], "arguments": call["arguments"]}}]
            out["done"] = done
            if done:
                out.update(done_reason="stop", total_duration=1_500_000 + 1000 * sum(usage),
                           load_duration=500_000, prompt_eval_count=usage[0], prompt_eval_duration=1000 * usage[0],
                           eval_count=usage[1], eval_duration=1000 * usage[1])
            return out

        if not stream:
            if kind == "malformed-json":
                return self._send(200, b'{"model": "' + model.encode() + b'", "message": {"content": ')
            data = _dumps(obj(text, True))
            if kind == "cut-stream":
                self.close_connection = True
                return self._send(200, data[: len(data) // 2], length=len(data))
            return self._send(200, data, "application/json; charset=utf-8")
        if kind == "malformed-json":
            events = [b'{"model": "' + model.encode() + b'", "message": {"content": \n']
        elif kind == "no-choices":
            events = [_dumps(obj("", True)) + b"\n"]
        elif self.endless:
            pieces = itertools.chain(_split(text, None)[:1], itertools.repeat(" more"))
            return self._stream((_dumps(obj(p, False)) + b"\n" for p in pieces), "application/x-ndjson",
                                pause=self.endless)
        else:
            events = [_dumps(obj(p, False)) + b"\n" for p in (_split(text, owner.chunks) or ([""] if call else []))]
            events.append(_dumps(obj("", True)) + b"\n")
        self._stream(events, "application/x-ndjson", cut=kind == "cut-stream")

    # ------------------------------------------------------------------ introspection
    def _introspect(self, path: str, query: dict[str, list[str]], body: Any) -> None:
        owner = self.server.owner
        if self.command == "GET" and path == "/__requests":
            return self._json(200, owner.requests)
        if self.command == "GET" and path == "/__stats":
            return self._json(200, {"hits": owner.hits((query.get("prefix") or [None])[0])})
        if self.command == "POST" and path == "/__reset":
            owner.reset()
            return self._json(200, {"ok": True})
        if self.command == "POST" and path == "/__script":
            try:
                owner.script(*((body or {}).get("scenarios") or []))
            except (ValueError, AttributeError, TypeError) as e:
                return self._json(400, {"error": str(e)})
            return self._json(200, {"ok": True})
        self._json(404, {"error": f"Unknown path {path}"})


def _ollama_tag(model: str) -> dict[str, Any]:
    return {"name": model, "model": model, "modified_at": "2025-01-01T00:00:00Z", "size": 397821319,
            "digest": "0" * 64, "details": _ollama_details(model)}


def _ollama_details(model: str) -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"],
            "parameter_size": "494.03M", "quantization_level": "Q4_K_M"}


def _ollama_show(model: str) -> dict[str, Any]:
    return {
        "modelfile": f"# Modelfile generated by fake-llm\nFROM {model}\nPARAMETER stop <|im_end|>\n",
        "parameters": "stop                           \"<|im_end|>\"",
        "template": "{{- if .Tools }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{- end }}"
                    "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n",
        "details": _ollama_details(model),
        "model_info": {"general.architecture": "qwen2", "general.parameter_count": 494032768,
                       "qwen2.context_length": 32768, "qwen2.embedding_length": 896},
        "capabilities": ["completion", "tools"],
        "modified_at": "2025-01-01T00:00:00Z",
    }


class FakeLLMServer:
    """The fake server. ``start()``/``stop()`` or ``with FakeLLMServer() as srv:``; see the module docstring."""

    def __init__(self, *, port: int = 0, reply: str = "echo: {prompt}", require_key: str | None = None,
                 latency: float = 0.0, chunks: int | None = None, chunk_delay: float = 0.0,
                 verbose: bool = False) -> None:
        if chunks is not None and chunks < 1:
            raise ValueError("chunks must be >= 1")
        self.reply, self.require_key, self.latency = reply, require_key, latency
        self.chunks, self.chunk_delay, self.verbose = chunks, chunk_delay, verbose
        self.host = HOST
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._script: deque[str] = deque()
        self._disconnects: list[dict[str, Any]] = []
        self._disconnect_cv = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeLLMServer:
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _HTTPServer(self, self._port)
            self._port = self._httpd.server_address[1]
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"fake-llm-{self._port}-serve", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: wake sleeping handlers, close every connection, join every thread. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)
        with httpd.lock:
            conns, workers = list(httpd.conns), list(httpd.workers)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def ollama_base(self) -> str:
        return self.url

    # ------------------------------------------------------------------ recording and scripting
    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def hits(self, path_prefix: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._requests if path_prefix is None or r["path"].startswith(path_prefix))

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._disconnects.clear()

    @property
    def disconnects(self) -> list[dict[str, Any]]:
        """Answers the client abandoned: ``{"path", "scenario", "at"}`` (``at``: ``time.monotonic()`` when the
        server's write failed), in order."""
        with self._lock:
            return list(self._disconnects)

    def wait_for_disconnects(self, n: int, timeout: float, scenario: str | None = None) -> bool:
        """Wait until at least ``n`` answers (of ``scenario``, if given) were abandoned by their client; False if
        ``timeout`` passed first. (A handler still sleeping for an earlier test's client records late.)"""
        def enough() -> bool:
            return sum(1 for d in self._disconnects if scenario in (None, d["scenario"])) >= n

        with self._disconnect_cv:
            return self._disconnect_cv.wait_for(enough, timeout)

    @property
    def open_connections(self) -> int:
        """Client connections the server holds open right now (idle keep-alive ones included)."""
        httpd = self._httpd
        if httpd is None:
            return 0
        with httpd.lock:
            return len(httpd.conns)

    def _disconnected(self, path: str, scenario: str | None) -> None:
        if self._stopping.is_set():
            return  # stop() cut it, not the client
        with self._disconnect_cv:
            self._disconnects.append({"path": path, "scenario": scenario, "at": time.monotonic()})
            self._disconnect_cv.notify_all()

    def script(self, *scenarios: str) -> None:
        """Queue scenario names; each chat/generate request without an ``x-fake-scenario`` header takes one."""
        for name in scenarios:
            if parse_scenario(name) is None:
                raise ValueError(f"unknown fake scenario {name!r}")
        with self._lock:
            self._script.extend(scenarios)

    def _pick_scenario(self, header: str | None, model: str) -> str | None:
        if header:
            return header
        with self._lock:
            if self._script:
                return self._script.popleft()
        return model if parse_scenario(model) else None

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any, scenario: str | None) -> None:
        entry = {"method": method, "path": path, "headers": headers, "body": body, "scenario": scenario}
        with self._lock:
            self._requests.append(entry)

    def _next_id(self) -> int:
        return next(self._ids)

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m theory_modal.testing.fake_llm",
                                     description="Fake OpenAI-compatible + Ollama server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="echo: {prompt}")
    parser.add_argument("--require-key", default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    srv = FakeLLMServer(port=args.port, reply=args.reply, require_key=args.require_key,
                        latency=args.latency_ms / 1000, chunks=args.chunks,
                        chunk_delay=args.chunk_delay_ms / 1000, verbose=args.verbose)
    with srv:
        print(f"LISTENING {srv.host}:{srv.port}", flush=True)
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
