"""Option values, searched: every value outside its documented range, non-finite, of the wrong type or not
JSON is an InvalidRequestError (also a ValueError) naming the option, raised before any network, on every
path (provider, wire payload, CLI); every in-range value is accepted."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import InvalidRequestError, get_llm_provider
from providers.request import (
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    OPTION_RANGES,
    check_options,
)

NUMERIC = sorted(OPTION_RANGES)
INTEGER = {"max_tokens", "seed"}
junk = st.one_of(
    st.none().map(lambda _: object()),
    st.binary(max_size=8),
    st.sets(st.integers(), max_size=3),
    st.complex_numbers(allow_nan=True),
    st.builds(lambda: (lambda: None)),
    st.fractions(),
    st.decimals(allow_nan=True),
)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=10))


def _refused(options: dict, name: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_options(options)
    assert isinstance(info.value, ValueError)
    assert name in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def out_of_range(key: str):
    lo, hi = OPTION_RANGES[key]
    if key in INTEGER:
        return st.one_of(st.integers(max_value=int(lo) - 1), st.integers(min_value=int(hi) + 1))
    return st.one_of(
        st.floats(max_value=lo, exclude_max=True, allow_nan=False), st.floats(min_value=hi, exclude_min=True, allow_nan=False),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0 - 1e-300 if lo == 0 else lo - 1e-9]),
    )


@settings(max_examples=400, deadline=None)
@given(data=st.data(), key=st.sampled_from(NUMERIC))
def test_numbers_outside_their_range_or_not_finite_are_refused(data, key):
    value = data.draw(out_of_range(key))
    if isinstance(value, float) and math.isfinite(value) and OPTION_RANGES[key][0] <= value <= OPTION_RANGES[key][1]:
        return  # -0.0 - 1e-300 rounds into range
    _refused({key: value}, key)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), key=st.sampled_from(NUMERIC))
def test_numbers_inside_their_range_are_accepted(data, key):
    lo, hi = OPTION_RANGES[key]
    if key in INTEGER:
        value = data.draw(st.integers(int(lo), int(hi)))
    else:
        value = data.draw(st.one_of(st.floats(lo, hi), st.integers(int(math.ceil(lo)), int(hi))))
    assert check_options({key: value}) == {key: value}


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from([*NUMERIC, "stop", "response_format", "system"]),
       value=st.one_of(junk, st.booleans(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(), st.integers(), max_size=2)))
def test_values_of_the_wrong_type_are_refused(key, value):
    if key == "response_format" and isinstance(value, dict):
        value = {**value, "bad": object()}
    if key == "stop" and isinstance(value, list) and not value:
        value = [1]
    _refused({key: value}, key)


@settings(max_examples=200, deadline=None)
@given(stop=st.one_of(
    st.lists(st.text(min_size=1, max_size=5), min_size=MAX_STOP_SEQUENCES + 1, max_size=MAX_STOP_SEQUENCES + 50),
    st.lists(st.text(min_size=MAX_STOP_LENGTH + 1, max_size=MAX_STOP_LENGTH + 20), min_size=1, max_size=2),
    st.just([""]), st.just(""),
))
def test_stop_is_bounded(stop):
    _refused({"stop": stop}, "stop")


@settings(max_examples=200, deadline=None)
@given(tree=st.recursive(json_leaves, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                             st.dictionaries(st.text(max_size=5), kids, max_size=3)),
                         max_leaves=20),
       poison=st.one_of(junk, st.sampled_from([math.nan, math.inf, -math.inf])))
def test_response_format_must_be_plain_json(tree, poison):
    """Anywhere inside response_format, a non-JSON value (object, bytes, set, NaN, inf...) is refused."""
    ok = {"type": "json_schema", "json_schema": {"schema": tree}}
    assert check_options({"response_format": ok}) == {"response_format": ok}
    _refused({"response_format": {"type": "json_schema", "json_schema": {"schema": [tree, poison]}}}, "response_format")


def test_response_format_is_bounded_in_depth_and_size():
    deep: dict = {"type": "json_object"}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    _refused({"response_format": deep}, "response_format")
    cyclic: dict = {"type": "json_object"}
    cyclic["self"] = cyclic
    _refused({"response_format": cyclic}, "response_format")
    _refused({"response_format": {"type": "json_object", "blob": "x" * 70_000}}, "response_format")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["temperature", "top_p", "presence_penalty"]),
       value=st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -5.0, 10**30]))
def test_bad_options_fail_before_the_network_on_every_provider(key, value, fake_llm, no_provider_keys):
    """Live LiteLLM pointed at a real (fake) server, the mock, and the wire payload: refused, server untouched."""
    fake_llm.reset()
    live = get_llm_provider("litellm", api_key="sk-options-test-0123456789", api_base=fake_llm.openai_base)
    for call in (lambda: live.chat("hi", **{key: value}), lambda: live.stream_chat("hi", **{key: value}),
                 lambda: get_llm_provider("mock").chat("hi", **{key: value})):
        with pytest.raises(InvalidRequestError, match=key):
            call()
    from theory_modal.adapters import get_adapter

    with pytest.raises(InvalidRequestError, match=key):
        get_adapter("local").run("llm/mock@1", {"prompt": "hi", "options": {key: value}})
    assert fake_llm.hits() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(
    st.tuples(st.just("--temperature"), st.one_of(
        st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-0.000001"]),
        st.floats(allow_nan=False).filter(lambda v: not 0 <= v <= 2).map(repr))),
    st.tuples(st.just("--max-tokens"), st.one_of(
        st.sampled_from(["nan", "0", "1.5"]),
        st.integers().filter(lambda v: not 1 <= v <= 10_000_000).map(str))),
))
def test_cli_bad_option_values_exit_2_with_one_line(case, capsys):
    from theory_modal.cli import main

    flag, value = case
    capsys.readouterr()
    rc = main(["run", "hi", "--ref", "llm/mock@1", f"{flag}={value}"])
    out = capsys.readouterr()
    assert rc == 2, (flag, value, out)
    assert out.err.startswith("error: ") and out.err.count("\n") == 1 and "Traceback" not in out.err
