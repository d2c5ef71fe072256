"""MockProvider: deterministic, free, offline. A real provider, shipped, so callers can test against it.

- Same prompt (and model, options, attachments, history) -> same text and the same usage, every time.
- ``history`` changes the reply deterministically: the last tool result is quoted, else the turn count is.
- ``output_schema``: the reply is JSON generated from the schema (types, enums, required, nested objects and
  arrays, bounds), seeded by the prompt, so ``reply.data`` validates; the schema's other keywords are refused.
- ``tools``: the first tool (or the one ``tool_choice`` names) is called with arguments generated from its
  ``parameters``, unless the conversation just answered a tool call or ``tool_choice="none"``.
- ``enqueue(...)`` scripts the next turns (FIFO, one per attempt, so a re-ask takes the next item): strings
  are raw reply text (``"not json"`` then ``'{"a": 1}'`` scripts invalid-then-valid), dicts are turns with
  any of ``text``, ``data``, ``tool_calls`` (``[{"name", "arguments"}]``), ``finish_reason``; exceptions
  (instances or classes) are raised — so callers can test their handling of every error class.
- The ``mock_error`` option (e.g. ``mock_error="rate_limited"``) raises that error kind: this is how a failure
  is scripted from the other side of a process boundary (CLI, Modal payload), where no object can be passed.
- Streaming splits exactly the text ``chat`` returns.
- ``timeout`` (constructor, or the ``timeout`` option per request) is a deadline like the real providers', for
  the whole call (re-asks included): a ``latency_ms`` longer than the time left sleeps until the deadline, then
  raises :class:`ProviderTimeoutError`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import lru_cache
from typing import Any

from providers.attachments import Attachment
from providers.base import ChatRequest, build_request
from providers.contract import LLMReply
from providers.errors import (
    ContextWindowExceededError,
    CredentialsError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from providers.deadline import check_timeout
from providers.fallback import achat_method, astream_method, chat_method, check_fallbacks, stream_method
from providers.request import check_options
from providers.streams import AsyncChatStream, ChatStream
from providers.structured import TooCostly, Turn, acomplete, compile_validator, complete, finish_stream, within_budget
from providers.usage import make_usage

__all__ = ["MockProvider", "MOCK_ERRORS", "schema_instance", "generated_turn"]

@lru_cache(maxsize=1)
def _mock_errors() -> dict[str, ProviderError]:
    """``mock_error`` option values -> the error they raise (messages mimic the real providers'). Public as
    ``MOCK_ERRORS``; built on first use, because building an error redacts its message, and the first
    redaction compiles the redaction patterns (a tenth of a mock chat's cold start)."""
    return {
        "unavailable": ProviderUnavailableError("Mock provider unavailable (scripted failure).", provider="mock"),
        "credentials": CredentialsError("MOCK_API_KEY missing or Mock unreachable (scripted failure).", provider="mock"),
        "model_not_found": ModelNotFoundError("Mock model not found (scripted failure).", provider="mock"),
        "rate_limited": RateLimitError("Mock rate limit (scripted failure).", provider="mock", retry_after=1.0),
        "timeout": ProviderTimeoutError("Mock timed out (scripted failure).", provider="mock"),
        "invalid_request": InvalidRequestError("Mock rejected the request (scripted failure).", provider="mock"),
        "context_window_exceeded": ContextWindowExceededError("Mock context window exceeded (scripted failure).", provider="mock"),
    }


def __getattr__(name: str) -> Any:
    if name == "MOCK_ERRORS":
        return _mock_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TURN_KEYS = frozenset({"text", "data", "tool_calls", "finish_reason"})
Scripted = str | dict[str, Any] | BaseException | type[BaseException]


def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _split(text: str) -> list[str]:
    """Split into word chunks that keep their leading whitespace, so ''.join(chunks) == text."""
    chunks: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        i = start
        while i < n and text[i].isspace():
            i += 1
        while i < n and not text[i].isspace():
            i += 1
        chunks.append(text[start:i])
        start = i
    return chunks


def schema_instance(schema: dict[str, Any], *seed_parts: str) -> Any:
    """A deterministic instance of ``schema`` (seeded by ``seed_parts``); :class:`InvalidRequestError` when the
    schema uses a keyword no generator can promise to satisfy. Shared with LiteLLM's smoke mode."""
    from providers.schema_data import UnsupportedSchema, generate, seed_for  # here: only schemas and tools need it

    defs = {k: schema[k] for k in ("$defs", "definitions") if k in schema}

    def is_valid(node: Any, value: Any) -> bool:
        try:
            with within_budget(value):
                return compile_validator({**node, **defs} if isinstance(node, dict) else node).is_valid(value)
        except TooCostly:
            return False

    try:
        return generate(schema, seed_for(*seed_parts, json.dumps(schema, sort_keys=True)), is_valid=is_valid)
    except UnsupportedSchema as exc:
        raise InvalidRequestError(
            f"the mock cannot generate data for this schema: {exc}. Script the reply with enqueue(...) instead"
        ) from None


def _call_id(*parts: str) -> str:
    from providers.schema_data import seed_for

    return f"call_{seed_for(*parts):016x}"[:21]


def _answered(conversation: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The tool result to use: the last turn other than a user turn, when it is a tool turn that is not an
    error report (after an error a model calls the tool again)."""
    for turn in reversed(conversation):
        if turn["role"] != "user":
            ok = turn["role"] == "tool" and not str(turn.get("content") or "").startswith("Error")
            return turn if ok else None
    return None


def generated_turn(req: ChatRequest, extra: Sequence[dict[str, Any]] = ()) -> tuple[str, list[dict[str, Any]]]:
    """The unscripted turn: a tool call, JSON for the schema, or the echo text. Shared with LiteLLM's smoke
    mode, so both answer a schema or tools with the same valid data."""
    conversation = [*req.history, {"role": "user", "content": req.prompt}, *extra]
    answered = _answered(conversation)
    if req.tools and req.tool_choice != "none" and (req.tool_choice is not None or answered is None):
        name = req.tool_choice["name"] if isinstance(req.tool_choice, dict) else req.tools[0]["name"]
        tool = next(t for t in req.tools if t["name"] == name)
        args = schema_instance(tool["parameters"], req.model, req.prompt, name)
        return "", [{"id": _call_id(req.model, req.prompt, name, str(len(conversation))), "name": name,
                     "arguments": json.dumps(args)}]
    if req.output is not None:
        return json.dumps(schema_instance(req.output.json_schema, req.model, req.prompt)), []
    text = f"mock reply to: {req.prompt}"
    if req.attachments:
        text += " [attachments: " + "; ".join(
            f"{a.name} {a.mime} {a.size} bytes sha256:{a.sha256[:12]}" for a in req.attachments
        ) + "]"
    if answered is not None:
        text += f" [tool result: {answered['content']}]"
    elif req.history:
        text += f" [after {len(req.history)} turns]"
    return text, []


class MockProvider:
    """Deterministic provider. ``latency_ms`` makes each call really take that long (and report it)."""

    name = "mock"

    def __init__(
        self, model_default: str = "mock", *, latency_ms: int = 0, timeout: float | None = None,
        fallbacks: Sequence[str] | None = None,
    ) -> None:
        self.model_default = model_default
        self.latency_ms = int(latency_ms)
        self.timeout = None if timeout is None else check_timeout(timeout)
        self.fallbacks = check_fallbacks(fallbacks, provider=self.name)
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        #: The last 1,000 calls' (prompt, model, options, attachment names; history, tools, output_schema when
        #: given), for assertions in callers' tests.
        self.calls: deque[dict[str, Any]] = deque(maxlen=1000)

    # ------------------------------------------------------------------ scripting
    def enqueue(self, *replies: Scripted) -> MockProvider:
        """Script the next turns (FIFO): strings are raw text, dicts are turns (``text``, ``data``,
        ``tool_calls``, ``finish_reason``), exceptions (or classes) are raised."""
        for item in replies:
            if isinstance(item, dict) and (not item or set(item) - _TURN_KEYS):
                raise ValueError(f"a scripted turn is a dict with keys among {sorted(_TURN_KEYS)}; got {sorted(item)}")
        with self._lock:
            self._queue.extend(replies)
        return self

    def _next_scripted(self) -> str | dict[str, Any] | None:
        with self._lock:
            if not self._queue:
                return None
            item = self._queue.popleft()
        if isinstance(item, type) and issubclass(item, BaseException):
            item = item(f"scripted {item.__name__} from MockProvider")
        if isinstance(item, BaseException):
            raise item
        return item if isinstance(item, dict) else str(item)

    # ------------------------------------------------------------------ core
    def _request(
        self, prompt: object, model: str | None, attachments: Sequence[Attachment] | None, structure: dict[str, Any],
        options: dict[str, Any],
    ) -> ChatRequest:
        mock_error = options.pop("mock_error", None)
        req = build_request(prompt, model=model, default_model=self.model_default, attachments=attachments,
                            options=options, provider=self.name, **structure)
        record: dict[str, Any] = {
            "prompt": req.prompt, "model": req.model,
            "options": {**(req.options or {}), **({"system": req.system} if req.system else {})},
            "attachments": [a.name for a in req.attachments],
        }
        for key, value in (("history", list(req.history)), ("tools", [t["name"] for t in req.tools]),
                           ("output_schema", req.output.json_schema if req.output else None)):
            if value:
                record[key] = value
        self.calls.append(record)
        if mock_error is not None:
            mock_errors = _mock_errors()
            if mock_error not in mock_errors:
                raise InvalidRequestError(f"unknown mock_error {mock_error!r}; known: {', '.join(mock_errors)}")
            template = mock_errors[mock_error]
            extra = {"retry_after": template.retry_after} if isinstance(template, RateLimitError) else {}
            raise type(template)(template.message, provider="mock", model=req.model, **extra)
        return req

    def _turn(self, req: ChatRequest, extra: list[dict[str, Any]]) -> Turn:
        scripted = self._next_scripted()
        tool_calls: list[dict[str, Any]] = []
        finish = None
        if isinstance(scripted, dict):
            text = scripted.get("text") or ""
            if "data" in scripted:
                text = json.dumps(scripted["data"])
            for i, call in enumerate(scripted.get("tool_calls") or []):
                args = call.get("arguments", {})
                tool_calls.append({
                    "id": call.get("id") or _call_id(req.prompt, str(len(extra)), str(i)),
                    "name": call.get("name"),
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                })
            finish = scripted.get("finish_reason")
        elif scripted is not None:
            text = scripted
        else:
            text, tool_calls = generated_turn(req, extra)
        conversation = [*req.history, *extra]
        tokens_in = (
            _words(req.prompt) + _words(req.system)
            + sum(_words(t.get("content")) for t in conversation)
            + sum(_words(a.text) if not a.is_image else 85 for a in req.attachments)  # 85: a low-detail image
        )
        tokens_out = _words(text) + sum(_words(c["name"]) + _words(c["arguments"]) for c in tool_calls)
        usage = make_usage(tokens_in, tokens_out, self.latency_ms, 0)
        return Turn(text, usage, finish or ("tool_calls" if tool_calls else "stop"), tool_calls)

    # ------------------------------------------------------------------ latency under a deadline
    def _timeout(self, options: dict[str, Any]) -> float | None:
        """The request's ``timeout`` option (validated like every option), else the provider's."""
        return check_options({"timeout": options.pop("timeout", None)}).get("timeout") or self.timeout

    @staticmethod
    def _ends(timeout: float | None) -> float | None:
        """When a call's deadline passes (monotonic clock): one deadline for every attempt, re-asks included."""
        return None if timeout is None else time.monotonic() + timeout

    def _delay(self, timeout: float | None, ends: float | None = None) -> tuple[float, ProviderError | None]:
        """How long to sleep, and the deadline error to raise after it when the latency exceeds the time left
        (``ends``: the call's deadline, so a re-ask gets only what the earlier attempts left; else ``timeout``)."""
        delay = self.latency_ms / 1000
        left = timeout if ends is None or timeout is None else max(0.0, ends - time.monotonic())
        if left is None or delay <= left:
            return delay, None
        return left, ProviderTimeoutError(
            f"Mock did not finish within the {timeout:g}s deadline (its latency is {delay:g}s): raise timeout= "
            "(or the request's timeout option), or lower latency_ms.", provider="mock", attempts=1,
        )

    def _sleep(self, timeout: float | None, ends: float | None = None) -> None:
        delay, error = self._delay(timeout, ends)
        if delay:
            time.sleep(delay)
        if error is not None:
            raise error

    async def _asleep(self, timeout: float | None, ends: float | None = None) -> None:
        delay, error = self._delay(timeout, ends)
        if delay:
            import asyncio  # here, not at the top: a sync mock chat need not load asyncio (a third of its cold start)

            await asyncio.sleep(delay)
        if error is not None:
            raise error

    # ------------------------------------------------------------------ the contract
    @chat_method
    def chat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> LLMReply:
        structure = dict(history=history, output_schema=output_schema, tools=tools, tool_choice=tool_choice,
                         output_retries=output_retries)
        timeout = self._timeout(options)
        req = self._request(prompt, model, attachments, structure, options)
        ends = self._ends(timeout)

        def attempt(extra: list[dict[str, Any]]) -> Turn:
            turn = self._turn(req, extra)
            self._sleep(timeout, ends)
            return turn

        return complete(req, self.name, attempt)

    @achat_method
    async def achat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> LLMReply:
        structure = dict(history=history, output_schema=output_schema, tools=tools, tool_choice=tool_choice,
                         output_retries=output_retries)
        timeout = self._timeout(options)
        req = self._request(prompt, model, attachments, structure, options)
        ends = self._ends(timeout)

        async def attempt(extra: list[dict[str, Any]]) -> Turn:
            turn = self._turn(req, extra)
            await self._asleep(timeout, ends)
            return turn

        return await acomplete(req, self.name, attempt)

    @stream_method
    def stream_chat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> ChatStream:
        structure = dict(history=history, output_schema=output_schema, tools=tools, tool_choice=tool_choice,
                         output_retries=output_retries)
        timeout = self._timeout(options)
        req = self._request(prompt, model, attachments, structure, options)
        turn = self._turn(req, [])  # eagerly: bad input and scripted errors raise at the call

        def gen() -> Iterator[str]:
            self._sleep(timeout)
            yield from _split(turn.text)
            return finish_stream(req, self.name, turn)

        return ChatStream(gen())

    @astream_method
    def astream_chat(
        self,
        prompt: str,
        *,
        model: str | None = None,
        attachments: Sequence[Attachment] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        output_schema: Any = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        output_retries: int = 1,
        **options: Any,
    ) -> AsyncChatStream:
        structure = dict(history=history, output_schema=output_schema, tools=tools, tool_choice=tool_choice,
                         output_retries=output_retries)
        timeout = self._timeout(options)
        req = self._request(prompt, model, attachments, structure, options)
        turn = self._turn(req, [])

        async def agen() -> AsyncIterator[str | LLMReply]:
            await self._asleep(timeout)
            for chunk in _split(turn.text):
                yield chunk
            yield finish_stream(req, self.name, turn)

        return AsyncChatStream(agen())

    def __repr__(self) -> str:
        return f"MockProvider(model_default={self.model_default!r})"
