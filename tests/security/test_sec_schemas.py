"""Caller-supplied JSON Schemas (``output_schema``, tool ``parameters``), searched for two failures:

1. A schema makes the process touch the network. jsonschema, left to its defaults, fetches any remote
   ``$ref`` while validating, so a caller could make a deployed function dial any host (cloud metadata
   included). Invariant: for any schema, chat() with a scripted reply resolves no name and opens no socket.
2. A schema passes the checks but then breaks validation after the (paid) call with a non-provider error.
   Invariant: every outcome is a reply or a ProviderError; a schema whose ``$ref`` cannot resolve is refused
   as InvalidRequestError before any network (naming the ref), never a stray jsonschema/referencing error.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import InvalidRequestError, ProviderError
from providers.mock import MockProvider
from providers.request import check_output_schema, check_tools

REMOTE = ["https://example.com/s.json", "http://169.254.169.254/latest/meta-data", "http://127.0.0.1:9/x",
          "file:///etc/passwd", "z.json", "//host/x", "urn:x:y", "s.json#/a"]
LOCAL = ["#", "#/$defs/a", "#/$defs/missing", "#/properties", "#anchor", "#/$defs/a/properties/x", "#/%24defs/a"]

leaf = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["integer", "string", "boolean", "number", "object", "array"])}),
    st.fixed_dictionaries({"$ref": st.sampled_from(REMOTE + LOCAL)}),
    st.fixed_dictionaries({"$dynamicRef": st.sampled_from(["#anchor", "#meta", REMOTE[0]])}),
)
schemas = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(
            st.sampled_from(["a", "x", "n"]), inner, max_size=3)}),
        st.fixed_dictionaries({"type": st.just("array"), "items": inner}),
        st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)}),
    ),
    max_leaves=6,
).map(lambda s: {**s, "$defs": {"a": {"$anchor": "anchor", "type": "object",
                                      "properties": {"x": {"type": "integer"}}}}})
replies = st.sampled_from(['{"a": 1}', '{"x": {"x": 2}}', "[1, 2]", '"s"', "3", '{"n": [true]}', "{}"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=schemas, first=replies, second=replies)
def test_no_schema_touches_the_network_or_escapes_as_a_non_provider_error(sockets, schema, first, second):
    llm = MockProvider()
    llm.enqueue(first, second)
    try:
        reply = llm.chat("fill it", output_schema=schema)
    except ProviderError as exc:
        assert "Traceback" not in str(exc)
    else:
        assert reply.data == json.loads(reply.text) or reply.data is None
    assert sockets == [], f"a schema made the process use the network: {sockets}"


@pytest.mark.parametrize("ref", REMOTE)
def test_a_remote_ref_is_refused_up_front_naming_it(sockets, ref):
    for check in (lambda s: check_output_schema(s),
                  lambda s: check_tools([{"name": "t", "parameters": {"type": "object", "properties": {"p": s}}}])):
        with pytest.raises(InvalidRequestError) as info:
            check({"type": "object", "properties": {"a": {"$ref": ref}}})
        assert repr(ref)[:40] in str(info.value) or ref[:30] in str(info.value)
        assert "nothing is fetched" in str(info.value)
    assert sockets == []


@pytest.mark.parametrize("ref", ["#/$defs/missing", "#nope", "#/properties/zzz"])
def test_a_local_ref_that_points_nowhere_is_refused_before_any_call(sockets, ref):
    llm = MockProvider()
    llm.enqueue('{"a": 1}')
    with pytest.raises(InvalidRequestError) as info:
        llm.chat("x", output_schema={"type": "object", "properties": {"a": {"$ref": ref}}})
    assert ref in str(info.value) and "points nowhere" in str(info.value)
    assert len(llm.calls) == 0 and sockets == []


def test_local_refs_and_anchors_that_resolve_are_accepted():
    schema = {"$defs": {"n": {"$anchor": "num", "type": "integer"}}, "type": "object",
              "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"$ref": "#num"}}, "required": ["a", "b"]}
    llm = MockProvider()
    llm.enqueue('{"a": 1, "b": 2}')
    assert llm.chat("x", output_schema=schema).data == {"a": 1, "b": 2}


hostile_json = st.one_of(
    st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 50_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(['{"n": NaN}', '{"n": Infinity}', '{"n": -Infinity}', '{"n": 1e400}', '{"n": -1e999}',
                     '{"n": ' + "9" * 5000 + "}", '{"n": "\\ud800"}', "", "   ", "null", '{"n": 1}']),
    st.text(max_size=40),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
                 lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                 max_leaves=10).map(lambda v: json.dumps(v)),
)


@settings(max_examples=150, deadline=None)
@given(text=hostile_json, as_tool=st.booleans())
def test_any_upstream_json_ends_as_wire_safe_data_or_an_output_validation_error(text, as_tool):
    """Invariant: whatever the model sends (deep nesting, NaN, overflowing numbers, lone surrogates, junk), the
    outcome is a reply whose data/tool arguments are standard JSON (json.dumps(allow_nan=False) succeeds), or an
    OutputValidationError; never a RecursionError, a ValueError from the JSON layer, or non-finite numbers."""
    from providers.errors import OutputValidationError

    llm = MockProvider()
    if as_tool:
        turn = {"tool_calls": [{"id": "c1", "name": "t", "arguments": text}]}
        llm.enqueue(turn, turn)
        call = lambda: llm.chat("x", tools=[{"name": "t", "parameters": {"type": "object"}}])  # noqa: E731
    else:
        llm.enqueue(text, text)
        call = lambda: llm.chat("x", output_schema={"type": ["object", "array", "number", "string", "null", "boolean"]})  # noqa: E731
    try:
        reply = call()
    except OutputValidationError as exc:
        assert exc.attempts == 2
        return
    json.dumps([reply.data, reply.tool_calls], allow_nan=False)
