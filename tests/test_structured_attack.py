"""Attacks on what a model (or a hostile upstream) sends back, and on the tool loop built on it.

Invariants searched:

1. A reply's ``tool_calls`` can always be sent back as the next call's ``history`` (with one tool turn per
   call): whatever ids the upstream chose (missing, repeated, too long, spaces, slashes), and however deep its
   arguments; a reply that could not be continued is no reply.
2. ``reply.data`` and ``reply.tool_calls`` are text a strict UTF-8 JSON writer can output (CLI, batch, wire):
   a lone surrogate escape in the model's JSON is a re-ask, never data no writer can encode.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import OutputValidationError
from providers.mock import MockProvider
from providers.request import check_history

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [{"name": "f", "parameters": {"type": "object"}}, {"name": "g", "parameters": {"type": "object"}}]

ids = st.one_of(st.none(), st.text(max_size=140), st.sampled_from(["call_0", "call_1", "a", "call 1", "x" * 129]))


def _continue(reply) -> list[dict]:
    return [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": reply.text or None, "tool_calls": reply.tool_calls},
        *({"role": "tool", "tool_call_id": c["id"], "content": "done"} for c in reply.tool_calls),
    ]


@SETTINGS
@given(call_ids=st.lists(ids, min_size=1, max_size=4), names=st.lists(st.sampled_from(["f", "g"]), min_size=4))
def test_reply_tool_calls_always_pass_back_as_history(call_ids, names):
    """Invariant 1, ids: any upstream ids give a reply whose tool_calls the next call accepts as history."""
    mock = MockProvider()
    mock.enqueue({"tool_calls": [{"id": cid, "name": names[i], "arguments": {"i": i}} for i, cid in enumerate(call_ids)]})
    reply = mock.chat("hi", tools=TOOLS)
    assert [c["arguments"] for c in reply.tool_calls] == [{"i": i} for i in range(len(call_ids))]
    check_history(_continue(reply))
    assert mock.chat("next", history=_continue(reply), tools=TOOLS).finish_reason == "stop"


def test_valid_upstream_ids_are_kept():
    mock = MockProvider().enqueue({"tool_calls": [{"id": "call_abc", "name": "f"}, {"id": "toolu_01:x.y", "name": "g"}]})
    assert [c["id"] for c in mock.chat("hi", tools=TOOLS).tool_calls] == ["call_abc", "toolu_01:x.y"]


def test_tool_arguments_too_deep_for_history_are_reasked_then_refused():
    """Invariant 1, depth: arguments history would refuse are a re-ask (then OutputValidationError), not a reply."""
    deep: dict = {"v": 1}
    for _ in range(100):
        deep = {"a": deep}
    mock = MockProvider().enqueue({"tool_calls": [{"name": "f", "arguments": deep}]},
                                  {"tool_calls": [{"name": "f", "arguments": {"ok": 1}}]})
    reply = mock.chat("hi", tools=TOOLS)
    assert reply.tool_calls[0]["arguments"] == {"ok": 1}
    mock.enqueue({"tool_calls": [{"name": "f", "arguments": deep}]})
    try:
        mock.chat("hi", tools=TOOLS, output_retries=0)
    except OutputValidationError as exc:
        assert "nested" in str(exc)
    else:
        raise AssertionError("a too-deep call was returned as a reply")


@SETTINGS
@given(code=st.integers(0xD800, 0xDFFF), where=st.sampled_from(["schema", "tool"]))
def test_a_lone_surrogate_in_model_json_is_a_reask_and_outputs_stay_utf8(code, where):
    """Invariant 2: the first (lone-surrogate) answer is re-asked; the reply that comes back encodes as UTF-8."""
    bad = '{"a": "x\\u%04x"}' % code
    mock = MockProvider()
    if where == "schema":
        mock.enqueue(bad, '{"a": "fine"}')
        reply = mock.chat("hi", output_schema={"type": "object"})
        assert reply.data == {"a": "fine"}
    else:
        mock.enqueue({"tool_calls": [{"name": "f", "arguments": bad}]}, {"tool_calls": [{"name": "f", "arguments": {}}]})
        reply = mock.chat("hi", tools=TOOLS)
        assert reply.tool_calls[0]["arguments"] == {}
    json.dumps(reply.to_dict(), ensure_ascii=False).encode("utf-8")


def test_a_surrogate_pair_is_text_and_accepted():
    mock = MockProvider().enqueue('{"a": "\\ud83d\\ude00"}')
    assert mock.chat("hi", output_schema={"type": "object"}).data == {"a": "\U0001F600"}


# ------------------------------------------------------------------------------------------- deadlines
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def test_mock_timeout_bounds_the_whole_call_re_asks_included():
    """``timeout`` is a deadline for the whole call: three 0.4 s attempts do not fit in 1 s, whatever each
    attempt's own latency (the mock used to check every attempt against the full timeout)."""
    from providers.errors import ProviderTimeoutError

    mock = MockProvider(latency_ms=400, timeout=1.0).enqueue("bad", "bad", "bad", "bad")
    try:
        mock.chat("hi", output_schema=SCHEMA, output_retries=3)
    except ProviderTimeoutError:
        pass
    else:
        raise AssertionError("re-asks ran past the deadline")



def test_mock_async_timeout_bounds_the_whole_call_re_asks_included():
    import asyncio

    from providers.errors import ProviderTimeoutError

    mock = MockProvider(latency_ms=400).enqueue("bad", "bad", "bad", "bad")
    try:
        asyncio.run(mock.achat("hi", output_schema=SCHEMA, output_retries=3, timeout=1.0))
    except ProviderTimeoutError:
        pass
    else:
        raise AssertionError("re-asks ran past the deadline")


def test_litellm_timeout_bounds_the_whole_call_re_asks_included(fake_llm, no_provider_keys):
    from providers import RetryPolicy, get_llm_provider
    from providers.errors import ProviderTimeoutError

    llm = get_llm_provider("litellm", model_default="openai/gpt-4o-mini", api_base=fake_llm.openai_base,
                           api_key="sk-test-attack12", timeout=1.0, retry=RetryPolicy(max_attempts=1))
    fake_llm.script("json-invalid", "json-invalid", "json-invalid", "json-invalid")
    fake_llm.latency = 0.4
    try:
        llm.chat("hi", output_schema=SCHEMA, output_retries=3)
    except ProviderTimeoutError:
        pass
    else:
        raise AssertionError("re-asks ran past the deadline")
    finally:
        fake_llm.latency = 0.0


# ------------------------------------------------------------------------------------------- pydantic over an adapter
def _adapter_provider():
    from theory_modal.adapters import get_adapter
    from theory_modal.adapters.provider import AdapterProvider

    return AdapterProvider(get_adapter("local"), "llm/mock@1")


def test_a_strict_pydantic_model_gives_the_same_data_in_process_and_over_an_adapter():
    """Nothing accepted on one path and refused on another: a strict model takes a JSON date string (JSON mode),
    so rebuilding ``data`` in python mode refused what chat() in-process accepted."""
    import datetime

    from pydantic import BaseModel, ConfigDict

    class Strict(BaseModel):
        model_config = ConfigDict(strict=True)
        when: datetime.date
        n: int

    direct = MockProvider().chat("hi", output_schema=Strict)
    remote = _adapter_provider().chat("hi", output_schema=Strict)
    assert isinstance(remote.data, Strict) and remote.data == direct.data


def test_a_pydantic_validator_the_schema_cannot_carry_is_output_validation_error_over_an_adapter():
    """The processor validates the JSON Schema only; the model's own validator refusing the data must be the
    contract's OutputValidationError (with the raw text and usage), not a raw pydantic ValidationError."""
    from pydantic import BaseModel, field_validator

    class Odd(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def odd(cls, v: int) -> int:
            if v % 2 == 0:
                raise ValueError("must be odd")
            return v

    provider = _adapter_provider()
    outcomes = set()
    for prompt in ("a", "b", "c", "d", "e", "f"):  # the mock's data is seeded by the prompt: odd and even n
        try:
            outcomes.add(type(provider.chat(prompt, output_schema=Odd).data).__name__)
        except OutputValidationError as exc:
            assert "must be odd" in str(exc) and exc.raw_text and exc.usage is not None
            outcomes.add("OutputValidationError")
    assert outcomes == {"Odd", "OutputValidationError"}


# ------------------------------------------------------------------------------------------- CLI files
def test_cli_schema_or_history_file_nested_too_deeply_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    from theory_modal.cli import main

    deep = tmp_path / "deep.json"
    deep.write_text('{"items":' * 5000 + '{"type":"string"}' + "}" * 5000)
    monkeypatch.chdir(tmp_path)
    for flag in ("--schema", "--history"):
        code = main(["run", "--ref", "llm/mock@1", flag, "deep.json", "hi"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and flag in err and "Traceback" not in err, (flag, err)


# ------------------------------------------------------------------------------------------- tool_choice honoured
def test_a_required_or_forced_tool_choice_answered_in_text_is_reasked_then_refused():
    """tool_choice "required" / a tool name asks for a call; an upstream that ignores it (Ollama has no
    tool_choice) answered in text and the reply had tool_calls None where the caller's loop expects calls."""
    for choice in ("required", "g"):
        mock = MockProvider().enqueue("just text", {"tool_calls": [{"name": "g", "arguments": {}}]})
        reply = mock.chat("hi", tools=TOOLS, tool_choice=choice)
        assert reply.finish_reason == "tool_calls" and reply.tool_calls[0]["name"] == "g"
        mock.enqueue("just text")
        try:
            mock.chat("hi", tools=TOOLS, tool_choice=choice, output_retries=0)
        except OutputValidationError as exc:
            assert "tool_choice requires a call" in str(exc)
        else:
            raise AssertionError(f"{choice}: a text answer was accepted")


def test_a_call_of_another_tool_than_forced_or_under_none_is_reasked():
    mock = MockProvider().enqueue({"tool_calls": [{"name": "f"}]}, {"tool_calls": [{"name": "g"}]})
    assert mock.chat("hi", tools=TOOLS, tool_choice="g").tool_calls[0]["name"] == "g"
    mock = MockProvider().enqueue({"tool_calls": [{"name": "f"}]}, "plain text")
    reply = mock.chat("hi", tools=TOOLS, tool_choice="none")
    assert reply.tool_calls is None and reply.text == "plain text"


def test_a_hostile_upstream_cannot_make_the_error_message_huge():
    calls = [{"name": "x" * 100_000}] * 50
    mock = MockProvider().enqueue({"tool_calls": calls})
    try:
        mock.chat("hi", tools=TOOLS, output_retries=0)
    except OutputValidationError as exc:
        assert len(str(exc)) < 1_000
    else:
        raise AssertionError("unknown tools were accepted")


def test_an_output_error_from_another_service_with_malformed_usage_has_unknown_usage():
    from providers.errors import error_from_dict

    good = {"tokens_in": 3, "tokens_out": 2, "latency_ms": 1, "usd_micros": None}
    for usage in ({"tokens_in": "lots", "usd_micros": 1.5}, {**good, "tokens_out": -1}, [1, 2], "x"):
        err = error_from_dict({"type": "OutputValidationError", "message": "m", "usage": usage})
        assert isinstance(err, OutputValidationError) and err.usage is None
    assert error_from_dict({"type": "OutputValidationError", "message": "m", "usage": good}).usage == good


def test_a_pydantic_schema_is_refused_in_process_exactly_when_the_wire_refuses_its_json_schema():
    """Nothing accepted on one path and refused on another: a pydantic model whose JSON Schema is over the size
    cap was accepted by chat() in-process but refused by every adapter (it travels as that JSON Schema)."""
    from typing import Literal

    import pytest
    from pydantic import BaseModel, create_model

    from providers import InvalidRequestError

    words = tuple(f"word{i:06d}" for i in range(12_000))
    Big = create_model("Big", pick=(Literal[words], ...))  # type: ignore[valid-type]

    class Small(BaseModel):
        n: int

    for model, refused in ((Big, True), (Small, False)):
        outcomes = []
        for provider in (MockProvider(), _adapter_provider()):
            try:
                provider.chat("hi", output_schema=model)
                outcomes.append("accepted")
            except InvalidRequestError as exc:
                assert "output_schema" in str(exc)
                outcomes.append("refused")
        assert outcomes == ["refused" if refused else "accepted"] * 2, (model.__name__, outcomes)


def test_a_history_generator_is_refused_in_process_and_over_an_adapter_alike():
    from providers import InvalidRequestError

    for provider in (MockProvider(), _adapter_provider()):
        try:
            provider.chat("hi", history=({"role": "user", "content": "x"} for _ in range(1)))
        except InvalidRequestError as exc:
            assert "history" in str(exc)
        else:
            raise AssertionError(f"{type(provider).__name__} accepted a generator the other path refuses")


def test_tool_calls_reported_without_tools_offered_do_not_make_a_tool_calls_reply():
    """finish_reason "tool_calls" promises reply.tool_calls; with no tools offered there are none to give."""
    reply = MockProvider().enqueue({"text": "hello", "tool_calls": [{"name": "f", "arguments": {}}]}).chat("hi")
    assert reply.finish_reason == "stop" and reply.tool_calls is None and reply.text == "hello"


def test_the_reask_after_a_forbidden_call_does_not_tell_the_model_to_call_again():
    """The feedback sent upstream after a call tool_choice forbids says what to do instead."""
    from providers.base import build_request
    from providers.structured import Mismatch, Turn, build_reply
    from providers.usage import make_usage

    req = build_request("hi", model="mock", default_model="mock", provider="mock", tools=TOOLS, tool_choice="none")
    try:
        build_reply(req, "mock", Turn("", make_usage(1, 1, 0, 0), "tool_calls",
                                      [{"id": "c1", "name": "f", "arguments": "{}"}]))
    except Mismatch as m:
        tool_turn = m.feedback[-1]
        assert tool_turn["role"] == "tool" and "answer in text" in tool_turn["content"]
        assert "Call the tool again" not in tool_turn["content"]
    else:
        raise AssertionError("a call under tool_choice 'none' was accepted")


# ------------------------------------------------------------------------------------------- the tool loop, searched
P_TOOLS = [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
           {"name": "g", "parameters": {"type": "object"}}]
script_turns = st.one_of(
    st.text(max_size=6),
    st.fixed_dictionaries({"tool_calls": st.lists(st.fixed_dictionaries({
        "id": ids, "name": st.sampled_from(["f", "g", "h", ""]),
        "arguments": st.one_of(st.just({"n": 1}), st.just({"n": "x"}), st.just({}), st.text(max_size=5)),
    }), min_size=1, max_size=3)}),
)


@SETTINGS
@given(turns=st.lists(script_turns, min_size=1, max_size=4), choice=st.sampled_from([None, "none", "required", "f", "g"]),
       retries=st.integers(0, 3))
def test_any_scripted_tool_loop_ends_in_a_reply_that_honours_the_request_or_output_validation_error(turns, choice, retries):
    """Invariant: a reply's calls name offered tools, validate, respect tool_choice and pass back as history;
    a text reply appears only when tool_choice allows text; otherwise OutputValidationError after
    retries + 1 attempts at most."""
    from jsonschema import validate as js_validate

    mock = MockProvider().enqueue(*turns)
    try:
        reply = mock.chat("hi", tools=P_TOOLS, tool_choice=choice, output_retries=retries)
    except OutputValidationError as exc:
        assert exc.attempts <= retries + 1 and exc.attempts <= len(turns) + 1
        return
    if reply.tool_calls:
        assert choice != "none" and reply.finish_reason == "tool_calls"
        for call in reply.tool_calls:
            assert call["name"] in ("f", "g") and (choice not in ("f", "g") or call["name"] == choice)
            js_validate(call["arguments"], next(t for t in P_TOOLS if t["name"] == call["name"])["parameters"])
        check_history(_continue(reply))
    else:
        assert choice in (None, "none") and reply.finish_reason == "stop"
