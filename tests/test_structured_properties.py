"""Property-based attacks on the structured-output surface: schemas, histories and invalid replies."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import validators

from providers import InvalidRequestError, RetryPolicy, get_llm_provider
from providers.base import build_request, openai_messages
from providers.errors import OutputValidationError
from providers.mock import MockProvider

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------- schemas
names = st.text(string.ascii_letters + "_", min_size=1, max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-50, 50), st.text(string.ascii_letters, max_size=5))


@st.composite
def bounded_ints(draw):
    schema = {"type": "integer"}
    lo = draw(st.one_of(st.none(), st.integers(-1000, 1000)))
    hi = draw(st.one_of(st.none(), st.integers(-1000, 1000)))
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    if lo is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) and (hi is None or hi - lo >= 2) else "minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    if draw(st.booleans()):
        schema["multipleOf"] = draw(st.integers(1, 7))
        span_lo = lo if lo is not None else (hi - 100 if hi is not None else 0)
        span_hi = hi if hi is not None else span_lo + 100
        assume(any(k % schema["multipleOf"] == 0 for k in range(span_lo, span_hi + 1)))
    return schema


@st.composite
def bounded_numbers(draw):
    lo = draw(st.floats(-1e6, 1e6, allow_nan=False))
    width = draw(st.floats(0.01, 1e4, allow_nan=False))
    schema = {"type": "number", "minimum": lo, "maximum": lo + width}
    if draw(st.booleans()):
        schema["exclusiveMaximum"] = schema.pop("maximum")
    return schema


@st.composite
def strings(draw):
    schema = {"type": "string"}
    fmt = draw(st.sampled_from([None, "date-time", "date", "email", "uri", "uuid", "ipv4"]))
    if fmt:
        schema["format"] = fmt
    else:
        lo = draw(st.integers(0, 20))
        schema["minLength"] = lo
        if draw(st.booleans()):
            schema["maxLength"] = lo + draw(st.integers(0, 20))
    return schema


leaves = st.one_of(
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    bounded_ints(),
    bounded_numbers(),
    strings(),
    st.lists(scalars, min_size=1, max_size=4, unique_by=json.dumps).map(lambda xs: {"enum": xs}),
    scalars.map(lambda x: {"const": x}),
    st.just({"type": ["string", "integer"]}),
)


def containers(children):
    @st.composite
    def obj(draw):
        props = draw(st.dictionaries(names, children, max_size=4))
        required = draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
        schema = {"type": "object", "properties": props, "required": required}
        if draw(st.booleans()):
            schema["additionalProperties"] = False
        return schema

    @st.composite
    def arr(draw):
        lo = draw(st.integers(0, 3))
        schema = {"type": "array", "items": draw(children), "minItems": lo}
        if draw(st.booleans()):
            schema["maxItems"] = lo + draw(st.integers(0, 3))
        return schema

    alternatives = st.lists(children, min_size=1, max_size=3).flatmap(
        lambda xs: st.sampled_from([{"anyOf": xs}, {"oneOf": xs}])
    )
    return st.one_of(obj(), arr(), alternatives)


schemas = st.recursive(leaves, containers, max_leaves=12)


@SETTINGS
@given(schema=schemas, prompt=st.text(min_size=1, max_size=20).filter(str.strip))
def test_mock_data_for_any_supported_schema_validates(schema, prompt):
    """Invariant: the mock's data validates against the schema, or (only for a oneOf whose alternatives
    overlap, where no single value can be promised) the mock refuses before answering."""
    llm = MockProvider()
    try:
        reply = llm.chat(prompt, output_schema=schema)
    except InvalidRequestError as exc:
        assert "oneOf" in json.dumps(schema) and "oneOf" in str(exc), str(exc)
        return
    validator = validators.validator_for(schema)(schema)
    assert validator.is_valid(reply.data), (schema, reply.data)
    assert json.loads(reply.text) == reply.data
    assert llm.chat(prompt, output_schema=schema).data == reply.data, "deterministic"


@SETTINGS
@given(params=containers(leaves).filter(lambda s: s.get("type") == "object"))
def test_mock_tool_arguments_for_any_object_schema_validate(params):
    """Invariant: the mock's tool call names the first tool and its arguments validate."""
    tools = [{"name": "t1", "parameters": params}, {"name": "t2", "parameters": {"type": "object"}}]
    reply = MockProvider().chat("go", tools=tools)
    (call,) = reply.tool_calls
    assert call["name"] == "t1" and reply.finish_reason == "tool_calls"
    assert validators.validator_for(params)(params).is_valid(call["arguments"])


# ------------------------------------------------------------------------------------------- histories
ids = st.sampled_from(["c1", "c2", "c3", "bad id!", ""])
calls = st.fixed_dictionaries({"id": ids, "name": st.sampled_from(["t", "get_weather", "no such"]),
                               "arguments": st.one_of(st.just({}), st.just({"x": 1}), st.just("{}"))})
contents = st.one_of(st.text(max_size=10), st.none(), st.integers(), st.just(["part"]))
turns = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "bot", 3]),
                           "content": contents}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.one_of(st.none(), st.text(max_size=5)),
                           "tool_calls": st.lists(calls, min_size=0, max_size=2)}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": ids, "content": contents}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.text(max_size=5), "surprise": st.just(1)}),
)
histories = st.one_of(st.lists(turns, max_size=6), st.text(max_size=3), st.none(), st.integers())


def _expected_order(history, system, prompt):
    out = [{"role": "system", "content": system}] if system else []
    for t in history or []:
        m = {k: v for k, v in t.items() if not (k == "content" and v is None)}
        if "tool_calls" in m:
            m["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                "name": c["name"], "arguments": json.dumps(c["arguments"])}} for c in m["tool_calls"]]
        out.append(m)
    return out + [{"role": "user", "content": prompt}]


@SETTINGS
@given(history=histories, system=st.one_of(st.none(), st.just("S")))
def test_history_is_refused_or_sent_well_ordered(history, system):
    """Invariant: any history either raises InvalidRequestError, or yields system, history, prompt in order."""
    options = {"system": system} if system else {}
    try:
        req = build_request("the prompt", model=None, default_model="m", history=history, options=options)
    except InvalidRequestError as exc:
        assert "history" in str(exc)
        return
    assert openai_messages(req) == _expected_order(history, system, "the prompt")
    # a well-formed tool turn always directly answers an earlier call of the nearest assistant turn
    pending: set[str] = set()
    for t in req.history:
        if t["role"] == "tool":
            assert t["tool_call_id"] in pending
            pending.discard(t["tool_call_id"])
        else:
            assert not pending
            pending = {c["id"] for c in t.get("tool_calls") or []}
    assert not pending


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories)
def test_history_through_litellm_is_refused_before_the_network_or_sent_in_order(_fake_llm_server, history):
    """Invariant: over real HTTP, a refused history sends nothing; an accepted one arrives in order."""
    srv = _fake_llm_server
    srv.reset()
    llm = get_llm_provider("litellm", model_default="openai/gpt-4o-mini", api_base=srv.openai_base,
                           api_key="sk-test-props", timeout=5, retry=RetryPolicy(max_attempts=1))
    try:
        llm.chat("the prompt", history=history)
    except InvalidRequestError:
        assert srv.hits() == 0
        return
    (sent,) = [r["body"]["messages"] for r in srv.requests]
    expected = _expected_order(history, None, "the prompt")
    assert [(m["role"], m.get("content")) for m in sent] == [(m["role"], m.get("content")) for m in expected]


# ------------------------------------------------------------------------------------------- re-asks
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}
invalid_replies = st.one_of(
    st.text(alphabet=string.ascii_letters + " {}:", max_size=15).filter(lambda t: not _is_valid_json(t)),
    st.integers(-100, -1).map(lambda n: json.dumps({"n": n})),
    st.just('{"m": 1}'),
    st.just("[1, 2]"),
)


def _is_valid_json(text):
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and isinstance(value.get("n"), int) and value["n"] >= 0


def _words(text):
    return len(text.split())


@SETTINGS
@given(bad=st.lists(invalid_replies, max_size=6), retries=st.integers(0, 5), good=st.integers(0, 99))
def test_reask_count_and_usage_sums_are_exact(bad, retries, good):
    """Invariant: k invalid replies then a valid one succeed iff k <= output_retries, after exactly
    min(k, retries) + 1 attempts, with tokens summed over exactly those attempts."""
    valid = json.dumps({"n": good})
    llm = MockProvider().enqueue(*bad, valid)
    attempts = min(len(bad), retries) + 1
    sent = [*bad, valid][:attempts]
    expected_out = sum(_words(t) for t in sent)
    # attempt i reads the prompt (1 word) plus, for each earlier bad reply, that reply and the error message
    if len(bad) <= retries:
        reply = llm.chat("go", output_schema=SCHEMA, output_retries=retries)
        assert reply.data == {"n": good}
        usage = reply.usage
    else:
        with pytest.raises(OutputValidationError) as info:
            llm.chat("go", output_schema=SCHEMA, output_retries=retries)
        assert info.value.attempts == attempts and info.value.raw_text == sent[-1]
        usage = info.value.usage
    assert usage["tokens_out"] == expected_out
    assert len(llm._queue) == len(bad) + 1 - attempts, "exactly `attempts` scripted turns were consumed"
    assert usage["usd_micros"] == 0
    assert usage["tokens_in"] >= attempts
