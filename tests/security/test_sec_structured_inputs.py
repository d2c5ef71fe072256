"""Hostile values in the conversation/structure/tool fields (``history``, ``tools``, ``tool_choice``,
``output_schema``, ``output_retries``), from a remote caller, a careless user or another service.

Invariants searched:

1. Any value, in any of these fields, either builds a request or is refused with InvalidRequestError (a
   ValueError naming the field); never a TypeError/RecursionError from deep inside the checks.
2. Nothing is accepted on one path and refused on another: whatever ``build_request`` accepts is strict JSON
   (no NaN, no infinity, string keys only), so the same request crosses the wire (``Request.from_dict`` of its
   JSON) and a batch line, and the wire accepts it too.
3. Error messages stay bounded whatever the caller sent (one line, not a 10 MB echo of the input).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import InvalidRequestError
from providers.base import build_request
from providers.request import MAX_TOOLS, check_history, check_output_schema, check_tool_choice, check_tools
from theory_modal.wire import Request

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

hostile = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sets(st.integers(0, 3), max_size=2),
    st.frozensets(st.integers(0, 3), min_size=1, max_size=2),
    st.binary(max_size=3),
    st.dictionaries(st.integers(0, 3), st.integers(), min_size=1, max_size=2),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
    st.integers(),
    st.just(object()),
    st.just({"a": float("nan")}),
    st.just([{"x": float("inf")}]),
)


def _call(arguments: object) -> list[dict]:
    return [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "name": "f", "arguments": arguments}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]


PLACES = {
    "history.role": lambda v: {"history": [{"role": v, "content": "x"}]},
    "history.content": lambda v: {"history": [{"role": "user", "content": v}]},
    "history.name": lambda v: {"history": [{"role": "user", "content": "x", "name": v}]},
    "history.tool_call_id": lambda v: {"history": [*_call({})[:1], {"role": "tool", "tool_call_id": v, "content": "1"}]},
    "history.arguments": lambda v: {"history": _call({"a": v})},
    "history.arguments.whole": lambda v: {"history": _call(v)},
    "tools.name": lambda v: {"tools": [{"name": v}]},
    "tools.description": lambda v: {"tools": [{"name": "f", "description": v}]},
    "tools.parameters.keyword": lambda v: {"tools": [{"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "number", "maximum": v}}}}]},
    "tools.parameters.properties": lambda v: {"tools": [{"name": "f", "parameters": {"type": "object", "properties": v}}]},
    "tool_choice": lambda v: {"tools": [{"name": "f"}], "tool_choice": v},
    "tool_choice.name": lambda v: {"tools": [{"name": "f"}], "tool_choice": {"name": v}},
    "output_schema.enum": lambda v: {"output_schema": {"enum": [v]}},
    "output_schema.const": lambda v: {"output_schema": {"type": "object", "properties": {"a": {"const": v}}}},
    "output_schema.keyword": lambda v: {"output_schema": {"type": "number", "minimum": v}},
    "output_schema.properties": lambda v: {"output_schema": {"type": "object", "properties": v}},
    "output_retries": lambda v: {"output_retries": v},
}


def _outcome(fn, *args, **kwargs) -> str:
    try:
        fn(*args, **kwargs)
    except InvalidRequestError:
        return "refused"
    return "accepted"


@SETTINGS
@given(place=st.sampled_from(sorted(PLACES)), value=hostile, provider=st.sampled_from(["mock", "litellm"]))
def test_any_value_anywhere_is_a_request_or_invalid_request_and_the_wire_agrees(place, value, provider):
    """Invariants 1 and 2: InvalidRequestError or a request; an accepted request is strict JSON and the wire
    (its JSON, as a remote caller, the CLI and a batch line send it) accepts it too."""
    fields = PLACES[place](value)
    model = "mock" if provider == "mock" else "openai/gpt-4o-mini"
    local = _outcome(build_request, "hi", model=model, default_model=model, provider=provider, **fields)
    if local == "accepted":
        body = json.dumps({"prompt": "hi", **fields}, allow_nan=False)  # no TypeError/ValueError: strict JSON
        assert _outcome(Request.from_dict, json.loads(body), provider=provider) == "accepted", (place, value)


@pytest.mark.parametrize("role", [["user"], {"r": 1}, {"user"}])
def test_an_unhashable_role_is_invalid_request_naming_the_turn(role):
    with pytest.raises(InvalidRequestError, match=r"history\[0\]\['role'\]"):
        check_history([{"role": role, "content": "x"}])


def _deep(levels: int, leaf: object, key: str) -> object:
    node = leaf
    for _ in range(levels):
        node = {key: node}
    return node


@pytest.mark.parametrize("levels", [100, 900, 3000])
def test_deep_tool_arguments_in_history_are_invalid_request(levels):
    """A remote caller's history with deeply nested arguments: refused by depth, never a RecursionError."""
    with pytest.raises(InvalidRequestError, match="nested"):
        check_history(_call(_deep(levels, 1, "a")))


@pytest.mark.parametrize("levels", [100, 900, 3000])
def test_deep_schemas_are_invalid_request_for_output_and_tools(levels):
    schema = _deep(levels, {"type": "string"}, "items")
    with pytest.raises(InvalidRequestError, match="nested"):
        check_output_schema(schema)
    with pytest.raises(InvalidRequestError, match="nested"):
        check_tools([{"name": "f", "parameters": {"type": "object", "properties": {"a": schema}}}])


def test_a_schema_with_nan_or_a_non_string_key_is_refused_naming_the_field():
    with pytest.raises(InvalidRequestError, match="output_schema.*non-finite"):
        check_output_schema({"type": "number", "maximum": float("nan")})
    with pytest.raises(InvalidRequestError, match="output_schema.*non-string key"):
        check_output_schema({"type": "object", "properties": {1: {"type": "string"}}})
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]\['parameters'\].*non-finite"):
        check_tools([{"name": "f", "parameters": {"type": "object", "properties": {"a": {"minimum": float("inf")}}}}])


def test_tool_descriptions_are_bounded_alone_and_in_total():
    """A 50 MB description (or 128 large ones) is refused before any network, like an oversized schema."""
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]\['description'\]"):
        check_tools([{"name": "f", "description": "x" * 50_000_000}])
    many = [{"name": f"t{i}", "description": "x" * 90_000} for i in range(MAX_TOOLS)]
    with pytest.raises(InvalidRequestError, match="tools"):
        check_tools(many)


@pytest.mark.parametrize("choice", [["x" * 10_000_000], "y" * 10_000_000, {"name": "z" * 10_000_000}])
def test_a_huge_tool_choice_gives_a_short_error(choice):
    """Invariant 3: the error names the field and quotes at most a short piece of the value."""
    with pytest.raises(InvalidRequestError, match="tool_choice") as info:
        check_tool_choice(choice, [{"name": "f"}])
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize("name", ["auto", "none", "required"])
def test_tool_choice_name_dict_always_forces_that_tool(name):
    """``{"name": X}`` names a tool; a tool called "none" must not turn into tool_choice="none"."""
    tools = check_tools([{"name": name}, {"name": "other"}])
    assert check_tool_choice({"name": name}, tools) == {"name": name}


json_hostile = st.one_of(
    st.lists(st.text(max_size=2), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.text(max_size=4), st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
)


@SETTINGS
@given(places=st.lists(st.sampled_from(sorted(PLACES)), min_size=1, max_size=3), value=json_hostile)
def test_a_batch_line_with_any_structure_value_is_an_error_line_or_an_item_never_a_crash(places, value):
    """One bad item never costs the others: every line is parsed into an item (payload or error line)."""
    from theory_modal.batch import parse_input

    lines = [json.dumps({"prompt": "hi", **PLACES[p](value)}) for p in places] + ['{"prompt": "fine"}']
    items, _ = parse_input("\n".join(lines).encode(), ref="llm/mock@1", mode="live")
    assert len(items) == len(lines)
    assert items[-1].payload is not None and items[-1].error is None
    for it in items:
        assert (it.payload is None) != (it.error is None)
        if it.error is not None:
            assert it.error["kind"] == "invalid_request", it.error


def _multiplying(depth: int, fan: int = 3) -> dict:
    """A ``$defs`` chain where each level is ``anyOf`` of ``fan`` refs to the level below: ~1 KB of JSON whose
    validation of a failing value runs ``fan**depth`` checks (a billion-laughs shape through ``$ref``)."""
    defs: dict = {"c0": {"type": "string"}}
    for i in range(1, depth):
        defs[f"c{i}"] = {"anyOf": [{"$ref": f"#/$defs/c{i - 1}"}] * fan}
    return {"$ref": f"#/$defs/c{depth - 1}", "$defs": defs}


@pytest.mark.parametrize("depth", [12, 30])
def test_a_schema_whose_branches_multiply_is_refused_before_any_network(depth):
    """Resource use: a 1-3 KB schema took minutes of CPU (3**12 checks per probe) in the schema checks, and
    again on every reply; now a validation budget refuses it as InvalidRequestError naming the field."""
    schema = _multiplying(depth)
    assert len(json.dumps(schema)) < 3000
    with pytest.raises(InvalidRequestError, match="output_schema is too costly"):
        check_output_schema(schema)
    params = {"type": "object", "properties": {"a": schema["$ref"] and {"$ref": schema["$ref"]}}, "$defs": schema["$defs"]}
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]\['parameters'\] is too costly"):
        check_tools([{"name": "f", "parameters": params}])


def test_a_reply_that_makes_a_recursive_schema_multiply_is_a_reask_not_a_hang():
    """A recursive schema is cheap on small values (so it passes the checks), but each level of the reply
    triples the work: the budget grows with the reply's size, not its nesting, so a deep reply is refused."""
    from providers.errors import OutputValidationError
    from providers.mock import MockProvider

    node = {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}}
    schema = {"$defs": {"n": {"anyOf": [node, {**node, "required": ["a"]}, {**node, "minProperties": 1}]}},
              "$ref": "#/$defs/n"}
    check_output_schema(schema)
    deep: dict = {"a": 1}  # the innermost value fails every branch: the worst case
    for _ in range(40):
        deep = {"a": deep}
    mock = MockProvider().enqueue(json.dumps(deep))
    with pytest.raises(OutputValidationError, match="could not be checked"):
        mock.chat("hi", output_schema=schema, output_retries=0)
    shallow = {"a": {"a": {}}}
    assert MockProvider().enqueue(json.dumps(shallow)).chat("hi", output_schema=schema).data == shallow


@pytest.mark.parametrize("choice", ["auto", "none", "required", "f", {"name": "none"}])
def test_every_tool_choice_the_wire_accepts_validates_against_the_wire_schema(choice):
    """The documented schema said oneOf(keyword, tool name, {name}): "none" matched two branches, so every
    request with tool_choice "none" failed the published schema (found by tests/wire's property test)."""
    from theory_modal.wire_schema import validate

    req = Request.from_dict({"prompt": "hi", "tools": [{"name": "f"}, {"name": "none"}], "tool_choice": choice})
    validate("Request", req.to_dict())
