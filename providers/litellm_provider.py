"""LiteLLMProvider: one provider for OpenAI, Ollama, Anthropic, ... through LiteLLM.

What it adds over calling ``litellm.completion`` yourself (see shared/notes/litellm.md for the measurements):

- litellm is imported lazily, once, with its price map forced local (no import-time fetch), offline mode on
  (no Hugging Face tokenizer download stalling the first stream) and its stdout banner suppressed;
- per-call ``api_key``/``api_base``; LiteLLM globals are never touched per call;
- ``timeout`` (the provider's, or a request's ``timeout`` option) is a deadline for the WHOLE call: retries,
  back-off and a stream to its last chunk (:mod:`providers.deadline`); closing a stream closes its upstream
  connection at once;
- the SDK's hidden retries are off (``max_retries=0``) and :mod:`providers.retry` is the only retry loop;
- a missing key is reported at once, with no network, naming the variable to set;
- errors mapped to :mod:`providers.errors` with secret-free, actionable messages;
- usage from the provider's own counts (streams ask for ``include_usage``); cost from LiteLLM's price map in
  integer micro-USD, 0 for local models, ``None`` when the model has no price;
- smoke mode: LiteLLM's own ``mock_response`` path, deterministic, no key and no network;
- conversations, structured output and tool calls: ``output_schema`` goes out as ``response_format``
  (``json_schema``, strict where LiteLLM says the model supports it and the schema allows it; JSON mode plus the
  schema in the instructions otherwise), tools as OpenAI tools; replies are validated and re-asked in
  :mod:`providers.structured`, streamed tool-call deltas are assembled.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from providers.attachments import Attachment
from providers.base import ChatRequest, build_request, openai_messages, openai_tool_choice, openai_tools
from providers.contract import LLMReply
from providers.errors import (
    CredentialsError,
    InvalidRequestError,
    MissingDependencyError,
    ProviderError,
    ProviderTimeoutError,
    UnsupportedAttachmentError,
)
from providers.deadline import Deadline, check_timeout, enter, leave
from providers.fallback import achat_method, astream_method, chat_method, check_fallbacks, stream_method
from providers.litellm_errors import LOCAL_PROVIDERS, OLLAMA_PROVIDERS, Target, base_url, map_litellm_error
from providers.model_names import check_inferred_provider
from providers.redact import install_log_redaction, remember_secret
from providers.request import check_attachments, check_model, check_options, check_prompt
from providers.retry import RetryPolicy, aretry_call, retry_call, until
from providers.streams import AsyncChatStream, ChatStream
from providers.structured import Turn, acomplete, complete, finish_stream
from providers.vendors import ollama_base
from providers.usage import make_usage, to_micro_usd

__all__ = ["LiteLLMProvider", "load_litellm", "DEFAULT_OLLAMA_BASE"]

log = logging.getLogger("providers.litellm")

DEFAULT_OLLAMA_BASE = "http://localhost:11434"
DEFAULT_TIMEOUT_S = 60.0
#: How ``output_schema`` is sent: ``auto`` asks LiteLLM whether the model takes a JSON Schema natively.
STRUCTURED_OUTPUT_MODES = ("auto", "json_schema", "json_object")
#: Loggers that may carry upstream text or request details: theirs and ours.
_REDACTED_LOGGERS = (
    "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai", "openai._base_client", "httpx", "httpcore",
    "httpcore.http11", "httpcore.connection", "providers.litellm", "providers.retry",
)

_litellm = None
_load_lock = threading.Lock()
#: How many checked targets a provider remembers (one per model string it was called with).
_TARGET_CACHE_SIZE = 256


def load_litellm():
    """Import litellm once, configured for a library host. Call it early (e.g. before a Modal memory snapshot)
    to move the ~3 s import off the first request."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _load_lock:
        if _litellm is None:
            # "true" (any case) is required: "1" is NOT honoured by litellm.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
            try:
                litellm = _import_litellm()
            except ModuleNotFoundError as exc:
                if exc.name != "litellm":
                    raise
                from providers.registry import LITELLM_MISSING

                raise MissingDependencyError(LITELLM_MISSING, provider="litellm") from None

            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner on stdout per exception
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                logging.getLogger(name).setLevel(logging.WARNING)
            from providers.deadline_http import install

            install(litellm)  # sync socket waits end by the call's deadline (an empty pool: no connection yet)
            # LiteLLM logs whole upstream error bodies at DEBUG (a key the upstream echoes included), and a
            # host may turn DEBUG on: every record of these loggers is redacted before any handler sees it.
            install_log_redaction(*_REDACTED_LOGGERS)
            _litellm = litellm
    return _litellm


def _import_litellm():
    """``import litellm`` with the cyclic collector paused, then its heap frozen (``gc.freeze``).

    Why: the import builds ~370,000 long-lived objects. The full collections it triggers along the way walk
    them again and again, every later full collection would walk them too (0.2-0.5 s on a 2-core machine: a
    pause on the hot path; frozen, under 1 ms), and so would the interpreter's last collection at exit.
    Measured (CPU of ``python -c "import litellm"``): 3.9 s as is, 2.2 s paused and frozen; see bench/README.md."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import litellm
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
    return litellm


def _split_provider(model: str) -> tuple[str, str]:
    """'ollama_chat/qwen2.5:0.5b' -> ('ollama_chat', 'qwen2.5:0.5b'). Without a prefix LiteLLM infers it."""
    prefix, sep, rest = model.partition("/")
    if sep:
        return prefix, rest
    try:
        _, provider, _, _ = load_litellm().get_llm_provider(model)
    except Exception:  # noqa: BLE001 - an unknown bare name: LiteLLM will say so at call time
        return "", model
    return provider, model


class LiteLLMProvider:
    """``get_llm_provider("litellm", model_default=..., api_base=..., api_key=..., timeout=..., max_retries=...)``.

    ``smoke=True`` runs LiteLLM's ``mock_response`` path: same code path and response objects, no network.
    """

    name = "litellm"

    def __init__(
        self,
        model_default: str = "openai/gpt-4o-mini",
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        smoke: bool = False,
        fast_path: bool = True,
        structured_output: str = "auto",
        fallbacks: Sequence[str] | None = None,
    ) -> None:
        timeout = check_timeout(timeout)
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.model_default = check_model(model_default, "openai/gpt-4o-mini")
        self.api_base = api_base
        self._api_key = api_key  # private: never in repr, logs or errors
        remember_secret(api_key, owner=self)  # every redact() removes it while this provider lives
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy(max_attempts=max_retries + 1)
        self.smoke = bool(smoke)
        if structured_output not in STRUCTURED_OUTPUT_MODES:
            raise ValueError(f"structured_output must be one of {', '.join(STRUCTURED_OUTPUT_MODES)}, got {structured_output!r}")
        self.structured_output = structured_output
        self.fast_path = bool(fast_path)  # False: every call through litellm.completion (providers.openai_fast)
        #: Models tried, in order, when the requested one fails in a way another model can fix (providers.fallback).
        self.fallbacks = check_fallbacks(fallbacks)
        self._targets: dict[str, Target] = {}  # model -> its checked Target (see _checked_target)

    def __repr__(self) -> str:
        key = ", api_key=<set>" if self._api_key else ""
        fallbacks = f", fallbacks={list(self.fallbacks)!r}" if self.fallbacks else ""
        return (
            f"LiteLLMProvider(model_default={self.model_default!r}, api_base={self.api_base!r}{key}, "
            f"timeout={self.timeout:g}, smoke={self.smoke}{fallbacks})"
        )

    # ------------------------------------------------------------------ request building
    def _target(self, model: str) -> Target:
        llm_provider, bare = _split_provider(model)
        api_base = self.api_base
        if llm_provider in OLLAMA_PROVIDERS and not api_base:
            api_base = ollama_base()[0]  # LLM_API_BASE, else LiteLLM's own OLLAMA_API_BASE, else the default
        return Target(model, llm_provider, bare, api_base, self._api_key)

    def _checked_target(self, model: str) -> Target:
        """:meth:`_target` after :meth:`_check_provider`, remembered per model string: both depend only on the
        model and this provider's ``api_base`` and key (checked on every hit, so changing them is seen at once).
        Ollama targets are not kept: their base URL comes from the environment at each call. Bounded."""
        t = self._targets.get(model)
        if t is not None and t.api_base is self.api_base and t.api_key is self._api_key:
            return t
        t = self._target(model)
        self._check_provider(t)
        if t.llm_provider not in OLLAMA_PROVIDERS:
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[model] = t
        return t

    def _check_provider(self, t: Target) -> None:
        """Refuse a model whose prefix is no LiteLLM provider before LiteLLM's long error (and any network); a
        bare name's inferred provider must be one the grammar vets."""
        if "/" not in t.model:
            check_inferred_provider(t.model, t.llm_provider)
        if "/" in t.model and t.llm_provider not in load_litellm().provider_list:
            raise InvalidRequestError(
                f"unknown provider prefix '{t.llm_provider}' in model '{t.model}': use a LiteLLM provider prefix "
                "such as openai/, anthropic/, ollama_chat/ (list: https://docs.litellm.ai/docs/providers)",
                provider=self.name, model=t.model,
            )

    def _check_credentials(self, t: Target) -> None:
        """Fail at once, with no network, when the model needs a key that is not set (LiteLLM would otherwise
        answer a missing OpenAI key with a retryable-looking HTTP 500)."""
        if self.smoke or self._api_key or t.llm_provider in LOCAL_PROVIDERS:
            return
        missing = load_litellm().validate_environment(model=t.model, api_base=t.api_base).get("missing_keys") or []
        if any(not k.endswith("_API_BASE") for k in missing):
            raise CredentialsError(f"{t.key_env} missing or {t.vendor} unreachable.", provider=self.name, model=t.model)

    def _check_vision(self, t: Target, attachments: tuple[Attachment, ...]) -> None:
        """Refuse images for a model LiteLLM's map knows and does not mark as vision-capable (no network:
        Ollama models are skipped because LiteLLM would query the server)."""
        if not any(a.is_image for a in attachments) or t.llm_provider in OLLAMA_PROVIDERS:
            return
        try:
            info = load_litellm().get_model_info(model=t.model)
        except Exception:  # noqa: BLE001 - not in the map: unknown, let the provider decide
            return
        if not info.get("supports_vision"):
            raise UnsupportedAttachmentError(
                f"{t.model} does not take images (LiteLLM's model map has no vision support for it): use a "
                "vision model such as openai/gpt-4o-mini, or send text attachments only",
                provider=self.name, model=t.model,
            )

    def _user_content(self, req: ChatRequest) -> Any:
        if not req.attachments:
            return req.prompt
        parts: list[dict] = [{"type": "text", "text": req.prompt}]
        for a in req.attachments:
            if a.is_image:
                parts.append({"type": "image_url", "image_url": {"url": a.data_url()}})
            else:
                parts.append({"type": "text", "text": f"[attachment {a.name}]\n{a.text}"})
        return parts

    def _native_schema(self, t: Target) -> bool:
        """Whether to send the schema as ``response_format`` ``json_schema`` (else JSON mode + instructions).
        Ollama takes a schema as its ``format`` (LiteLLM translates it) though LiteLLM's map does not say so."""
        if self.structured_output != "auto":
            return self.structured_output == "json_schema"
        if t.llm_provider in OLLAMA_PROVIDERS:
            return True
        try:
            return bool(load_litellm().supports_response_schema(model=t.bare_model, custom_llm_provider=t.llm_provider or None))
        except Exception:  # noqa: BLE001 - unknown model: JSON mode is the safe choice
            return False

    def _structure(self, t: Target, req: ChatRequest) -> tuple[dict[str, Any], str | None]:
        """The request fields for ``output_schema`` and ``tools``, and the system text (schema instructions are
        added to it in JSON mode)."""
        fields: dict[str, Any] = {}
        system = req.system
        if req.output is not None:
            schema = req.output.json_schema
            if self._native_schema(t):
                spec: dict[str, Any] = {"name": req.output.name, "schema": schema}
                if self.structured_output == "auto" and _strict_ok(schema):
                    spec["strict"] = True
                fields["response_format"] = {"type": "json_schema", "json_schema": spec}
            else:
                fields["response_format"] = {"type": "json_object"}
                instructions = (
                    "Reply with only a JSON value, no prose and no code fence, that validates against this JSON "
                    f"Schema:\n{json.dumps(schema, separators=(',', ':'))}"
                )
                system = f"{system}\n\n{instructions}" if system else instructions
        if req.tools:
            tools, choice = openai_tools(req), openai_tool_choice(req)
            if t.llm_provider in OLLAMA_PROVIDERS and choice is not None:
                # Ollama has no tool_choice (LiteLLM drops it): offer only the named tool, or none at all.
                if isinstance(choice, dict):
                    tools = [x for x in tools if x["function"]["name"] == choice["function"]["name"]]
                elif choice == "none":
                    tools = []
                choice = None
            if tools:
                fields["tools"] = tools
            if choice is not None:
                fields["tool_choice"] = choice
        return fields, system

    def _smoke_text(self, model: str, prompt: str, attachments: tuple[Attachment, ...]) -> str:
        text = f"smoke reply from {model}: {prompt}"
        if attachments:
            text += " [attachments: " + "; ".join(f"{a.name} {a.mime} sha256:{a.sha256[:12]}" for a in attachments) + "]"
        return text

    def _smoke_response(self, req: ChatRequest, extra: list[dict[str, Any]]) -> Any:
        """What LiteLLM's ``mock_response`` should answer: data that validates, a valid tool call (generated
        from the schemas, as the mock provider does), or the smoke text."""
        from providers.mock import generated_turn

        text, calls = generated_turn(req, extra) if (req.output is not None or req.tools) else ("", [])
        if not calls:
            return text if req.output is not None else self._smoke_text(req.model, req.prompt, req.attachments)
        message = {
            "role": "assistant", "content": text or None,
            "tool_calls": [{"id": c["id"], "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls],
        }
        return load_litellm().ModelResponse(
            model=req.model, choices=[{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            usage={"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        )

    def _prepare(
        self,
        prompt: object,
        model: str | None,
        attachments: Sequence[Attachment] | None,
        structure: dict[str, Any],
        options: dict[str, Any],
    ) -> tuple[Target, dict[str, Any], ChatRequest]:
        req = build_request(prompt, model=model, default_model=self.model_default, attachments=attachments,
                            options=options, **structure)
        t = self._checked_target(req.model)
        self._check_credentials(t)
        if req.attachments:
            self._check_vision(t, req.attachments)
        fields, system = self._structure(t, req) if (req.output is not None or req.tools) else (None, req.system)
        opts = dict(req.options or {})
        kwargs: dict[str, Any] = {
            "model": req.model,
            "messages": openai_messages(req, self._user_content(req), system=system),
            "timeout": opts.pop("timeout", None) or self.timeout,  # the deadline; also each read's own bound
            "max_retries": 0,  # the openai SDK would retry 2x inside each of our attempts
            **opts,
        }
        if fields:
            kwargs.update(fields)
        if t.api_base:
            kwargs["api_base"] = t.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        if self.smoke:
            kwargs["mock_response"] = self._smoke_response(req, [])
        return t, kwargs, req

    def _with_extra(self, req: ChatRequest, kwargs: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
        """The kwargs of a re-ask: the same request with the feedback turns appended."""
        if not extra:
            return kwargs
        system = next((m["content"] for m in kwargs["messages"][:1] if m["role"] == "system"), None)
        out = {**kwargs, "messages": openai_messages(req, self._user_content(req), extra, system=system or "")}
        if self.smoke:
            out["mock_response"] = self._smoke_response(req, extra)
        return out

    # ------------------------------------------------------------------ results
    def _usd_micros(self, t: Target, cost: float | None, tokens_in: int, tokens_out: int) -> int | None:
        if self.smoke:
            return 0  # nothing was spent: LiteLLM would price its mocked reply as if it were real
        if t.llm_provider in LOCAL_PROVIDERS:
            return 0  # local compute; LiteLLM sometimes says None for these (ollama_chat/llama3)
        if tokens_in == 0 and tokens_out == 0:
            # No usage reported (a billed call always has input tokens): the price is unknown, never a made-up
            # 0, so a spend cap (batch --max-usd) cannot count an unmetered reply as free.
            return None
        if cost is None:
            try:
                cin, cout = load_litellm().cost_per_token(model=t.model, prompt_tokens=tokens_in, completion_tokens=tokens_out)
                cost = cin + cout
            except Exception:  # noqa: BLE001 - ModelNotMappedError & co: the price is unknown
                return None
        return to_micro_usd(cost)

    def _with_choices(self, t: Target, resp: Any) -> Any:
        """A 200 without choices fails its attempt inside the retry loop, so the error records ``attempts`` like
        every other failure (it is not retried: base ``ProviderError`` is not retryable)."""
        if not (getattr(resp, "choices", None) or []):
            raise ProviderError(f"{t.vendor} returned no choices for {t.model}", provider=self.name, model=t.model)
        return resp

    def _turn(self, t: Target, resp: Any, started: float) -> Turn:
        latency_ms = int((time.perf_counter() - started) * 1000)
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise ProviderError(f"{t.vendor} returned no choices for {t.model}", provider=self.name, model=t.model)
        message = choices[0].message
        text = message.content or ""
        raw_calls = getattr(message, "tool_calls", None)
        calls = [
            {"id": c.id or "", "name": c.function.name or "", "arguments": c.function.arguments or ""}
            for c in raw_calls
        ] if raw_calls else []
        u = getattr(resp, "usage", None)
        tokens_in = int(getattr(u, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(u, "completion_tokens", 0) or 0)
        cost = (getattr(resp, "_hidden_params", None) or {}).get("response_cost")
        usage = make_usage(tokens_in, tokens_out, latency_ms, self._usd_micros(t, cost, tokens_in, tokens_out))
        return Turn(text, usage, getattr(choices[0], "finish_reason", None), calls)

    def _backend(self, t: Target, kwargs: dict[str, Any]) -> Any:
        """What sends this call: the openai SDK fast path when LiteLLM itself would send it over the OpenAI
        protocol unchanged (see providers.openai_fast), else litellm. Both raise LiteLLM's exception classes."""
        litellm = load_litellm()
        if self.fast_path and not self.smoke:  # smoke stays on LiteLLM's mock_response path
            from providers.openai_fast import backend_for

            return backend_for(litellm, t.llm_provider, t.bare_model, kwargs) or litellm
        return litellm

    def _classifier(self, t: Target, kwargs: dict[str, Any]):
        return lambda exc: map_litellm_error(exc, t, timeout=kwargs["timeout"])

    def _on_deadline(self, t: Target, deadline: Deadline, acc: _StreamAccumulator | None = None):
        """The error for a call its deadline ended: the deadline, what it covers, and what to do."""

        def error(last: ProviderError, attempts: int) -> ProviderError:
            plural = "s" if attempts != 1 else ""
            partial = ""
            if acc is not None and acc.parts:
                partial = f" The reply is incomplete: {len(acc.parts)} chunk(s) had been delivered."
            return ProviderTimeoutError(
                f"{t.vendor} did not finish within the {deadline.timeout_s:g}s deadline (model {t.model}, "
                f"{attempts} attempt{plural}; timeout= covers the whole call, retries and stream included).{partial} "
                f"Raise timeout= (or the request's timeout option), or check the server at "
                f"{base_url(t) or 'its default URL'}.",
                provider=self.name, model=t.model, attempts=attempts,
            )

        return error

    # ------------------------------------------------------------------ chat
    # Each public method is written for one model; the decorators add ``fallbacks=``, the chain and telemetry.
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
        t, kwargs, req = self._prepare(prompt, model, attachments, structure, options)
        deadline = Deadline(kwargs["timeout"])  # one deadline for every attempt, re-asks included
        litellm = self._backend(t, kwargs)

        def attempt(extra: list[dict[str, Any]]) -> Turn:
            kw = self._with_extra(req, kwargs, extra)
            started = time.perf_counter()
            resp = retry_call(lambda: self._with_choices(t, litellm.completion(**kw)), self._classifier(t, kw),
                              self.retry, deadline=deadline, on_deadline=self._on_deadline(t, deadline))
            return self._turn(t, resp, started)

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
        t, kwargs, req = self._prepare(prompt, model, attachments, structure, options)
        deadline = Deadline(kwargs["timeout"])
        litellm = self._backend(t, kwargs)

        async def attempt(extra: list[dict[str, Any]]) -> Turn:
            kw = self._with_extra(req, kwargs, extra)
            started = time.perf_counter()

            async def call() -> Any:
                return self._with_choices(t, await litellm.acompletion(**kw))

            resp = await aretry_call(call, self._classifier(t, kw), self.retry,
                                     deadline=deadline, on_deadline=self._on_deadline(t, deadline))
            return self._turn(t, resp, started)

        return await acomplete(req, self.name, attempt)

    # ------------------------------------------------------------------ streaming
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
        """The deadline starts now (not at the first ``next``); ``close()`` closes the upstream connection."""
        structure = dict(history=history, output_schema=output_schema, tools=tools, tool_choice=tool_choice,
                         output_retries=output_retries)
        t, kwargs, req = self._prepare(prompt, model, attachments, structure, options)  # bad input raises here
        kwargs.update(stream=True, stream_options={"include_usage": True})
        return ChatStream(self._stream(t, kwargs, Deadline(kwargs["timeout"]), req))

    def _stream(self, t: Target, kwargs: dict[str, Any], deadline: Deadline, req: ChatRequest) -> Iterator[str]:
        litellm = self._backend(t, kwargs)
        classify = self._classifier(t, kwargs)
        acc = _StreamAccumulator()
        started = time.perf_counter()
        it: Any = None

        def open_until_first_text() -> tuple[Any, list[str]]:
            # Retried as a whole: nothing has reached the caller yet. A failed attempt's stream is closed here.
            acc.reset()
            stream = litellm.completion(**kwargs)
            try:
                for chunk in stream:
                    text = acc.add(chunk)
                    if text:
                        return stream, [text]
            except BaseException:
                _close_quietly(stream)
                raise
            return stream, []

        try:
            it, first = retry_call(open_until_first_text, classify, self.retry, deadline=deadline,
                                   on_deadline=self._on_deadline(t, deadline))
            yield from first
            broken: ProviderError | None = None
            try:
                while True:
                    token = enter(deadline)  # only around the read: never held across the yield below
                    try:
                        chunk = next(it, _END)
                    finally:
                        leave(token)
                    if chunk is _END:
                        break
                    text = acc.add(chunk)
                    if text:
                        yield text
                    if deadline.expired:  # also bounds a stream whose reads are not clipped (a host's own client)
                        raise TimeoutError("deadline passed between chunks")
            except Exception as exc:  # noqa: BLE001 - after the first chunk: no retry, no silent truncation
                broken = self._broken_off(exc, classify, t, acc, deadline)
            if broken is not None:
                raise broken  # outside the handler: the upstream exception must not ride along as __context__
            return self._stream_reply(t, kwargs, acc, started, req)
        finally:  # done, failed, closed (GeneratorExit) or collected: the upstream connection goes now
            if it is not None:
                _close_quietly(it)

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
        t, kwargs, req = self._prepare(prompt, model, attachments, structure, options)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        return AsyncChatStream(self._astream(t, kwargs, Deadline(kwargs["timeout"]), req))

    async def _astream(
        self, t: Target, kwargs: dict[str, Any], deadline: Deadline, req: ChatRequest
    ) -> AsyncIterator[str | LLMReply]:
        litellm = self._backend(t, kwargs)
        classify = self._classifier(t, kwargs)
        acc = _StreamAccumulator()
        started = time.perf_counter()
        it: Any = None

        async def open_until_first_text() -> tuple[Any, list[str]]:
            acc.reset()
            stream = await litellm.acompletion(**kwargs)
            try:
                async for chunk in stream:
                    text = acc.add(chunk)
                    if text:
                        return stream, [text]
            except BaseException:  # failed, timed out or cancelled: this attempt's connection goes now
                await _aclose_quietly(stream)
                raise
            return stream, []

        try:
            it, first = await aretry_call(open_until_first_text, classify, self.retry, deadline=deadline,
                                          on_deadline=self._on_deadline(t, deadline))
            for text in first:
                yield text
            broken: ProviderError | None = None
            try:
                while True:
                    async with until(deadline):  # per read: a timeout must never fire while the caller holds a chunk
                        chunk = await anext(it, _END)
                    if chunk is _END:
                        break
                    text = acc.add(chunk)
                    if text:
                        yield text
            except Exception as exc:  # noqa: BLE001
                broken = self._broken_off(exc, classify, t, acc, deadline)
            if broken is not None:
                raise broken  # outside the handler, as in _stream
            yield self._stream_reply(t, kwargs, acc, started, req)
        finally:  # done, failed, aclose()d or cancelled: close the upstream connection now, not at GC
            if it is not None:
                await _aclose_quietly(it)

    def _broken_off(
        self, exc: BaseException, classify, t: Target, acc: _StreamAccumulator, deadline: Deadline
    ) -> ProviderError:
        """A stream that failed after text reached the caller: one attempt, never retried, and a message that
        says the reply is incomplete (the cause alone, e.g. "unreachable", would hide that part of it was
        delivered). Past the deadline it is the deadline's :class:`ProviderTimeoutError`."""
        if deadline.expired:
            return self._on_deadline(t, deadline, acc)(classify(exc), 1)
        error = exc if isinstance(exc, ProviderError) else classify(exc)
        error.attempts = 1
        error.message = (
            f"The {t.vendor} stream for {t.model} broke off after {len(acc.parts)} chunk(s); the reply is incomplete "
            f"and was not retried (part of it had been delivered): call again for a full reply. Cause: {error.message}"
        )
        error.args = (error.message,)
        return error

    def _stream_reply(
        self, t: Target, kwargs: dict[str, Any], acc: _StreamAccumulator, started: float, req: ChatRequest
    ) -> LLMReply:
        latency_ms = int((time.perf_counter() - started) * 1000)
        text = "".join(acc.parts)
        if acc.tokens_in is None:  # the provider sent no usage chunk: count with LiteLLM's tokenizer
            litellm = load_litellm()
            acc.tokens_in = litellm.token_counter(model=t.model, messages=kwargs["messages"])
            acc.tokens_out = litellm.token_counter(model=t.model, text=text, count_response_tokens=True)
        usage = make_usage(
            acc.tokens_in, acc.tokens_out or 0, latency_ms, self._usd_micros(t, None, acc.tokens_in, acc.tokens_out or 0)
        )
        return finish_stream(req, self.name, Turn(text, usage, acc.finish_reason, acc.tool_calls()))


_END = object()


def _close_quietly(stream: Any) -> None:
    """Close an upstream stream (LiteLLM's wrapper closes the HTTP response, so the connection is released)."""
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing is best effort; the stream is being abandoned anyway
        log.debug("closing an upstream stream failed", exc_info=True)


async def _aclose_quietly(stream: Any) -> None:
    try:
        await stream.aclose()
    except Exception:  # noqa: BLE001
        log.debug("closing an upstream stream failed", exc_info=True)


class _StreamAccumulator:
    """Collects text deltas, tool-call deltas (by index: id and name once, arguments in pieces), the finish
    reason and the usage chunk (the last one, with ``choices == []``)."""

    __slots__ = ("parts", "tokens_in", "tokens_out", "finish_reason", "calls")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.parts: list[str] = []
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.finish_reason: str | None = None
        self.calls: dict[int, dict[str, Any]] = {}

    def tool_calls(self) -> list[dict[str, Any]]:
        return [self.calls[i] for i in sorted(self.calls)]

    def add(self, chunk: Any) -> str:
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            self.tokens_in = int(usage.prompt_tokens or 0)
            self.tokens_out = int(usage.completion_tokens or 0)
        choices = chunk.choices
        if not choices:
            return ""
        choice = choices[0]
        if getattr(choice, "finish_reason", None):
            self.finish_reason = choice.finish_reason
        delta = choice.delta
        for d in getattr(delta, "tool_calls", None) or []:
            index = getattr(d, "index", None) or 0
            call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            fn = getattr(d, "function", None)
            if getattr(d, "id", None):
                call["id"] = d.id
            if fn is not None and getattr(fn, "name", None):
                call["name"] = fn.name
            if fn is not None and getattr(fn, "arguments", None):
                call["arguments"] += fn.arguments
        text = delta.content or ""
        if text:
            self.parts.append(text)
        return text




def _strict_ok(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts ``schema``: every object closes ``additionalProperties`` and requires
    all its properties (strict mode answers 400 otherwise, so such schemas go non-strict)."""
    if not isinstance(schema, dict):
        return True
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, dict):
        props = props or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or []) != set(props):
            return False
    subs: list[Any] = list((props or {}).values()) if isinstance(props, dict) else []
    for key in ("$defs", "definitions"):
        subs += list((schema.get(key) or {}).values())
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        subs += list(schema.get(key) or [])
    subs.append(schema.get("items"))
    return all(_strict_ok(sub) for sub in subs)
