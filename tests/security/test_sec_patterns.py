"""A caller's ``pattern`` cannot hold a container core: patterns are matched under a time limit.

JSON Schema ``pattern`` / ``patternProperties`` come from the caller (``output_schema``, tool ``parameters``) and
the strings they are matched against come from the model. Python's ``re`` backtracks without limit and has no
timeout: ``^(a|aa)+$`` against 60 ``a`` and a ``!`` runs for hours. Patterns are matched with the ``regex`` module
under :data:`providers.structured.PATTERN_SECONDS` for the whole validation; past it the reply is re-asked, then
``OutputValidationError``. The semantics of every pattern that finishes are ``re``'s (differential property).
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.errors import InvalidRequestError, OutputValidationError
from providers.mock import MockProvider
from providers.structured import PATTERN_SECONDS, compile_validator, pattern_matches, schema_error

EVIL = [r"^(a|aa)+$", r"^(a|a)*$", r"^(a+)+b$", r"^(\w|\d)+$"]
EVIL_TEXT = "a" * 64 + "!"
#: Generous: the limit is PATTERN_SECONDS per validation; a re-ask is one more validation.
SLACK = 3.0


@pytest.mark.parametrize("pattern", EVIL)
def test_a_catastrophic_pattern_against_a_crafted_reply_ends_within_the_limit(pattern):
    validator = compile_validator({"type": "string", "pattern": pattern})
    t0 = time.monotonic()
    message = schema_error(validator, EVIL_TEXT if "b" not in pattern and "\\w" not in pattern else "a" * 64 + "!")
    assert time.monotonic() - t0 < PATTERN_SECONDS + SLACK
    assert message is None or "too long" in message or "does not match" in message


def test_many_slow_strings_share_one_time_limit():
    """The limit is for the whole validation, not per string: 50 crafted strings cost one limit, not 50."""
    validator = compile_validator({"type": "array", "items": {"type": "string", "pattern": r"^(a|aa)+$"}})
    t0 = time.monotonic()
    message = schema_error(validator, [EVIL_TEXT] * 50)
    assert time.monotonic() - t0 < PATTERN_SECONDS + SLACK
    assert message is not None and "too long" in message


def test_pattern_properties_are_bounded_too():
    validator = compile_validator({"type": "object", "patternProperties": {r"^(a|aa)+$": {"type": "integer"}}})
    t0 = time.monotonic()
    assert "too long" in schema_error(validator, {EVIL_TEXT: 1})
    assert time.monotonic() - t0 < PATTERN_SECONDS + SLACK
    assert "is not of type 'integer'" in schema_error(validator, {"aaaa": "x"})
    assert schema_error(validator, {"aaaa": 1, "b": "anything"}) is None


def test_a_provider_call_with_a_crafted_reply_is_reasked_then_refused_in_bounded_time():
    """End to end: the model keeps answering a string crafted for the caller's pattern; the call ends in
    OutputValidationError after its re-asks, each validation bounded."""
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": r"^(a|aa)+$"}}, "required": ["code"]}
    crafted = '{"code": "%s"}' % EVIL_TEXT
    mock = MockProvider().enqueue(crafted, crafted, crafted)
    t0 = time.monotonic()
    with pytest.raises(OutputValidationError, match="too long") as info:
        mock.chat("code?", output_schema=schema, output_retries=2)
    assert info.value.attempts == 3
    assert time.monotonic() - t0 < 3 * PATTERN_SECONDS + SLACK
    ok = MockProvider().enqueue('{"code": "aaaa"}')
    assert ok.chat("code?", output_schema=schema).data == {"code": "aaaa"}


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "("},
    {"type": "object", "patternProperties": {"[": {}}},
    {"type": "object", "properties": {"x": {"type": "string", "pattern": "a{2,1}"}}},
])
def test_a_pattern_that_cannot_be_compiled_is_refused_before_any_network(schema):
    with pytest.raises(InvalidRequestError, match="output_schema"):
        MockProvider().enqueue('"x"').chat("hi", output_schema=schema)
    with pytest.raises(InvalidRequestError, match="tools"):
        MockProvider().chat("hi", tools=[{"name": "f", "parameters": {"type": "object", "properties": {"a": schema}}}])


def test_a_pattern_key_inside_data_keywords_is_not_a_pattern():
    """``const``/``enum``/``default``/``examples`` hold data: a "pattern" member there is not compiled."""
    schema = {"type": "object", "properties": {"p": {"const": {"pattern": "("}}}, "default": {"pattern": "["}}
    assert MockProvider().enqueue('{"p": {"pattern": "("}}').chat("hi", output_schema=schema).data == {"p": {"pattern": "("}}


_SIMPLE = st.text(alphabet="ab.*+?|()^$\\d", min_size=1, max_size=8)


@settings(max_examples=400, deadline=None)
@given(pattern=_SIMPLE, text=st.text(alphabet="ab1!", max_size=12))
def test_bounded_matching_agrees_with_re_on_every_pattern_both_accept(pattern, text):
    """Invariant: for any pattern ``re`` compiles and any string, ``pattern_matches`` answers as
    ``re.search`` does (or says the pattern took too long; never a different answer)."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        return
    try:
        got = pattern_matches(pattern, text)
    except Exception as exc:  # noqa: BLE001 - only the bounded-time refusal is acceptable
        assert type(exc).__name__ == "TooCostly"
        return
    assert got == (compiled.search(text) is not None)
