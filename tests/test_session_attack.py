"""Attacks on this session's hot-path and pattern changes: each test names the invariant it searches for.

Patterns in JSON Schemas are matched with the ``regex`` module (it has a time limit, ``re`` has none). These tests
hold the contract that a pattern either means what ``re`` makes of it or is refused before any network, that
compiling a pattern cannot exhaust memory, and that no caller pattern reaches the unbounded ``re``.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import build_request
from providers.request import (check_attachments, check_history, check_options, check_output_retries,
                               check_output_schema, check_tool_choice, check_tools)
from providers.errors import InvalidRequestError
from providers.structured import compile_validator, pattern_error, schema_error
from providers.usage import to_micro_usd


def _schema(pattern: str) -> dict:
    return {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}


# ------------------------------------------------------------------ patterns regex reads differently from re
@pytest.mark.parametrize("pattern", [
    r"^(?:abc){e<=1}$",  # regex: fuzzy match (one error allowed); re: the literal text "abc{e<=1}"
    r"^x{i<=2,d<=1}$",
    r"^[[:alpha:]]+$",  # regex: a POSIX class; re: a set of '[:alph' then a literal ']'
    r"^[a-z--q]$",  # re warns: a set difference in a future version
    r"\p{L}+",  # regex-only syntax (re refuses it: jsonschema's own format check already did)
    r"(?V1)a",
    r"\mword\M",
    r"(?|(a)|(b))",
])
def test_a_pattern_regex_reads_differently_from_re_is_refused_before_any_network(pattern: str) -> None:
    """Invariant: a schema pattern either means what Python's re makes of it or is refused up front."""
    with pytest.raises(InvalidRequestError, match="pattern|regex"):
        build_request("hi", model="m", default_model="m", output_schema=_schema(pattern))


@pytest.mark.parametrize("pattern", [r"^\{e<=1\}$", r"^[{]x}$", r"a{2}", r"a{2,}", r"a{,3}", r"a{1,3}?", r"^\d+$"])
def test_quantifiers_and_escaped_braces_are_still_accepted(pattern: str) -> None:
    """Invariant: the refusal above does not catch ordinary quantifiers or an escaped / in-class brace."""
    assert pattern_error(pattern) is None
    build_request("hi", model="m", default_model="m", output_schema=_schema(pattern))


_ATOMS = ["a", "b", "ab", ".", r"\d", r"\.", "[ab]", "[^a]", "(a|b)", "(?:ab)", r"\{", "x"]
_QUANTS = ["", "*", "+", "?", "{2}", "{1,2}", "*?", "{e<=1}", "{0,}"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_ATOMS), st.sampled_from(_QUANTS)), min_size=1, max_size=5),
       st.sampled_from(["", "^"]), st.sampled_from(["", "$"]), st.text(alphabet="abx.{}1e<=", max_size=12))
def test_an_accepted_pattern_matches_exactly_as_re_would(parts, head, tail, text) -> None:
    """Invariant: for every pattern the checks accept, the bounded matcher agrees with re.search on any text."""
    pattern = head + "".join(a + q for a, q in parts) + tail
    try:
        re.compile(pattern)
    except re.error:
        assert pattern_error(pattern)
        return
    if pattern_error(pattern):
        return  # refused up front: allowed
    v = compile_validator({"type": "string", "pattern": pattern})
    assert (schema_error(v, text) is None) == (re.search(pattern, text) is not None), (pattern, text)


_CLASS_ATOMS = [r"\w", r"\W", r"\s", r"\S", r"\d", r"\D", r"\b", r"\B", r"[\w-]", r"[^\W\d]", r"[\s\d]", "a", ".",
                "(?#[)", "(?#{e<=1})", r"[]\w]", r"[^]\s]"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_CLASS_ATOMS), st.sampled_from(["", "+", "*", "?"])), min_size=1, max_size=4),
       st.sampled_from(["", "^", "(?i)", "(?a)"]), st.sampled_from(["", "$"]),
       st.text(alphabet=st.one_of(st.sampled_from("a_5 \x1c\u00b2\u00bd\u0301\u0345\U00010d40\u2028\u0660K\u212a"),
                                  st.characters()), max_size=6))
def test_unicode_classes_and_boundaries_match_as_in_re(parts, head, tail, text) -> None:
    """Invariant: \\w \\s \\d \\b and their negations mean what re means (regex's own \\w differs from
    re's on 30,468 characters, e.g. '\u00b2' and combining accents; \\s on \\x1c-\\x1f; \\d on newer digits)."""
    pattern = head + "".join(a + q for a, q in parts) + tail
    if pattern_error(pattern):
        return
    v = compile_validator({"type": "string", "pattern": pattern})
    assert (schema_error(v, text) is None) == (re.search(pattern, text) is not None), (pattern, text)


@pytest.mark.parametrize(("pattern", "text"), [
    (r"^\w$", "\u00b2"), (r"^\w+$", "e\u0301"), (r"^\s$", "\x1c"), (r"^\d$", "\U00010d40"), (r"\bx", "\u00b2x"),
    (r"^[\w.]+$", "\u00bd"), (r"^\W$", "\u00b2"), (r"\B", ""),
])
def test_each_known_class_difference_follows_re(pattern: str, text: str) -> None:
    """Invariant: the characters where regex's classes differ from re's get re's answer."""
    v = compile_validator({"type": "string", "pattern": pattern})
    assert (schema_error(v, text) is None) == (re.search(pattern, text) is not None)


def test_a_scoped_ascii_flag_is_refused() -> None:
    """Invariant: (?a:...) (ASCII classes for part of a pattern) is refused, not matched with Unicode classes."""
    assert "ASCII" in (pattern_error(r"(?a:\w)x") or "")
    assert pattern_error(r"(?a)\w") is None


@pytest.mark.parametrize("pattern", [r"(?i)[\w.]", r"(?i)[^\W\d]", r"(?i:[\s-])"])
def test_a_class_inside_a_set_under_ignorecase_is_refused(pattern: str) -> None:
    """Invariant: regex case-folds a set's \\w/\\W where re does not ('\u0345', '\u00df' differ); refused."""
    assert "IGNORECASE" in (pattern_error(pattern) or "")
    assert pattern_error(pattern.replace("(?i)", "")) is None or "(?i:" in pattern


# ------------------------------------------------------------------ compiling a pattern is bounded in memory
_MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
    from providers.base import build_request
    from providers.errors import InvalidRequestError
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": sys.argv[1]}}}
    try:
        build_request("hi", model="m", default_model="m", output_schema=schema)
    except InvalidRequestError as exc:
        print("refused:", exc)
    except BaseException as exc:
        print("crashed:", type(exc).__name__, exc)
    else:
        print("accepted")
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would report the (large) pytest parent's peak.
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
    print("peak MB", int(hwm) // 1024)
""")


@pytest.mark.parametrize("pattern", ["a{4294967294}", "(?:(?:a{2000}){2000}){2000}", "x{100000000}", "a{4294967294,}",
                                     r"\w{99999}", r"(?:\w{300}){300}", r"[^\W]{99999}", r"(?:\b\w){40000}",
                                     "\\w" * 5000, "\\b" * 3000, "[\\W]" * 2000])
def test_a_huge_repeat_count_is_refused_not_compiled_into_gigabytes(pattern: str) -> None:
    """Invariant: a caller's pattern never makes the pattern check allocate gigabytes (regex expands repeat
    counts when it compiles; re does not; re's \\w spelled out is a 735-range set per copy): it is refused with a
    clear error before compiling. Run under a 1.5 GB address-space limit so a failure is a MemoryError here, not the
    machine's OOM killer."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, pattern], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.startswith("refused:"), (out.stdout, out.stderr[-2000:])
    assert "pattern" in out.stdout
    assert int(out.stdout.rsplit("peak MB", 1)[1]) < 400, out.stdout  # refused before compiling, not by MemoryError


@pytest.mark.parametrize("pattern", [r"^\w{1,255}$", r"\w{100}", "a{0,4294967294}", "a{99999}", r"^\d{4}-\d{2}$"])
def test_ordinary_repeat_counts_are_accepted(pattern: str) -> None:
    """Invariant: the size bound only refuses what regex would unroll into megabytes, not common counts."""
    assert pattern_error(pattern) is None


# ------------------------------------------------------------------ no caller pattern reaches re unbounded
class _NoRe:
    def search(self, *a, **k):
        raise AssertionError(f"a caller's pattern reached the unbounded re.search: {a[:1]!r}")

    def __getattr__(self, name):
        return getattr(re, name)


def test_additional_properties_matches_pattern_properties_with_the_bounded_matcher(monkeypatch) -> None:
    """Invariant: additionalProperties decides which keys patternProperties covers without Python's re
    (``^(a|aa)+$`` against a long key of a's and a '!' backtracks for hours in re)."""
    import jsonschema._utils

    monkeypatch.setattr(jsonschema._utils, "re", _NoRe())
    schema = {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}},
              "additionalProperties": False}
    v = compile_validator(schema)
    assert schema_error(v, {"aaaa": 1}) is None
    assert "b" in (schema_error(v, {"b": 1}) or "")
    assert "too long" in (schema_error(v, {"a" * 80 + "!": 1}) or "")


def test_additional_properties_with_patterns_gives_the_same_verdicts_as_jsonschema() -> None:
    """Invariant: the bounded additionalProperties accepts and refuses what jsonschema's own does."""
    from jsonschema import Draft202012Validator

    schema = {"type": "object", "properties": {"p": {}}, "patternProperties": {"^x": {}, "y$": {"type": "string"}},
              "additionalProperties": {"type": "integer"}}
    v = compile_validator(schema)
    for value in ({}, {"p": "s"}, {"xa": "s"}, {"ay": "s"}, {"ay": 1}, {"z": 1}, {"z": "s"}, {"p": 1, "q": []}):
        assert (schema_error(v, value) is None) == Draft202012Validator(schema).is_valid(value), value


def test_unevaluated_properties_never_runs_a_caller_pattern_through_re(monkeypatch) -> None:
    """Invariant: jsonschema's unevaluatedProperties matches patternProperties with the unbounded re.search (its
    helper cannot take the bounded matcher): a schema combining the two is refused before any network, so no
    reply can make it backtrack for hours."""
    import jsonschema._utils

    monkeypatch.setattr(jsonschema._utils, "re", _NoRe())
    schema = {"type": "object", "allOf": [{"patternProperties": {"^(a|aa)+$": {}}}], "unevaluatedProperties": False}
    with pytest.raises(InvalidRequestError, match="unevaluatedProperties"):
        build_request("hi", model="m", default_model="m", output_schema=schema)
    plain = {"type": "object", "properties": {"a": {}}, "unevaluatedProperties": False}
    assert schema_error(compile_validator(plain), {"a": 1}) is None  # without patterns it still works
    build_request("hi", model="m", default_model="m", output_schema=plain)


# ------------------------------------------------------------------ every pattern is vetted, wherever it sits
@pytest.mark.parametrize("name", ["default", "enum", "const", "examples"])
def test_a_pattern_under_a_property_named_like_a_data_keyword_is_still_checked(name: str) -> None:
    """Invariant: a property (or $defs entry) called 'default'/'enum'/'const'/'examples' is a subschema, and
    its pattern is checked like any other (the walk skipped it as data)."""
    bad = r"^(?:abc){e<=1}$"  # fuzzy in regex, a literal brace in re
    with pytest.raises(InvalidRequestError, match="pattern"):
        build_request("hi", model="m", default_model="m", output_schema={"type": "object", "properties": {
            name: {"type": "string", "pattern": bad}}})
    with pytest.raises(InvalidRequestError, match="pattern"):
        build_request("hi", model="m", default_model="m", output_schema={"$defs": {name: {"type": "string", "pattern": bad}},
                                                       "type": "object", "properties": {"s": {"$ref": f"#/$defs/{name}"}}})


def test_a_pattern_inside_a_default_value_is_data_not_a_pattern() -> None:
    """Invariant: the data keywords' values are still not walked ("pattern" there is just a string)."""
    build_request("hi", model="m", default_model="m", output_schema={"type": "object", "default": {"pattern": r"^(?:abc){e<=1}$"},
                                                  "properties": {"s": {"type": "string"}}})


# ------------------------------------------------------------------ to_micro_usd's float shortcut
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(min_value=0, max_value=1100, allow_nan=False),
                 st.integers(0, 2**31).map(lambda n: n / 1e6),
                 st.integers(0, 2**31).map(lambda n: (n + 0.5) / 1e6),
                 st.floats(min_value=-5, max_value=5, allow_nan=False)))
def test_to_micro_usd_equals_exact_decimal_half_up_rounding(cost: float) -> None:
    """Invariant: the float shortcut gives the same integer as Decimal(repr(cost)) * 1e6 rounded half up."""
    if not math.isfinite(cost):
        return
    exact = int((Decimal(repr(cost)) * Decimal(1_000_000)).to_integral_value(rounding=ROUND_HALF_UP))
    assert to_micro_usd(cost) == exact


# ------------------------------------------------------------------ the plain lane and the chain agree on bad timeouts
@pytest.mark.parametrize("timeout", [10**400, -(10**400), 10**20, 3601, 0])
@pytest.mark.parametrize("call_log", [False, True])
def test_an_out_of_range_integer_timeout_is_a_clear_error_in_both_lanes(timeout: int, call_log: bool) -> None:
    """Invariant: chat/achat refuse any out-of-range timeout with InvalidRequestError naming 'timeout', with
    telemetry idle (the plain lane) and with the call log on (the chain): an int past float's range raised
    OverflowError from float() in both."""
    import asyncio

    from providers import telemetry
    from providers.mock import MockProvider

    telemetry.configure(call_log=call_log)
    try:
        p = MockProvider()
        with pytest.raises(InvalidRequestError, match="timeout"):
            p.chat("hi", timeout=timeout)
        with pytest.raises(InvalidRequestError, match="timeout"):
            asyncio.run(p.achat("hi", timeout=timeout))
    finally:
        telemetry.configure(call_log=False)


# ------------------------------------------------------------------ build_request's plain lane equals the full path
def _old_build_request(prompt, *, model, default_model, options=None, extra_options=None, provider="litellm"):
    """build_request as it was before the plain lane (6941db0), for a request with no structure."""
    from providers.base import ChatRequest
    from providers.request import check_model, check_prompt

    prompt = check_prompt(prompt)
    model = check_model(model, default_model, provider=provider)
    atts = check_attachments(None)
    opts = check_options(dict(options or {}), extra_options)
    hist = check_history(None)
    tool_list = check_tools(None)
    choice = check_tool_choice(None, tool_list)
    output = check_output_schema(None)
    retries = check_output_retries(1)
    system = opts.pop("system", None)
    return ChatRequest(prompt, model, atts, opts, system, hist, output, tool_list, choice, retries)


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 5000), st.floats(allow_nan=True), st.text(max_size=5),
                    st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_KEYS = st.sampled_from(["temperature", "max_tokens", "timeout", "system", "top_p", "stop", "seed", "bogus",
                         "response_format", "api_key", "model", "messages"])


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001
        return ("error", type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.just({}), st.dictionaries(_KEYS, _VALUES, max_size=4),
                 st.lists(st.tuples(_KEYS, _VALUES), max_size=2), st.just(""), st.just(0), st.just([])),
       st.sampled_from(["m", None, "openai/gpt-4o", "bad model!"]), st.sampled_from(["litellm", "mock"]))
def test_the_plain_lane_of_build_request_equals_the_full_path(options, model, provider) -> None:
    """Invariant: a request with no structure gets the same ChatRequest, or the same error (class and message),
    from the plain lane as from the full validation it skips."""
    new = _outcome(lambda: build_request("hi", model=model, default_model="m", options=options, provider=provider))
    old = _outcome(lambda: _old_build_request("hi", model=model, default_model="m", options=options, provider=provider))
    assert new == old


# ------------------------------------------------------------------ comments are not syntax
@pytest.mark.parametrize(("pattern", "text"), [
    (r"(?#[)\w", "a"), (r"(?#[)\w", "-"), (r"(?#\)[)\w", "a"), (r"(?#{e<=1})abc", "abc"), (r"(?#[)^\w+$", "e\u0301"),
])
def test_a_bracket_inside_a_comment_group_does_not_derail_the_class_rewrite(pattern: str, text: str) -> None:
    """Invariant: a '[' or '{' inside (?#...) is comment text: the pattern still matches exactly as re.search
    (the rewrite took '(?#[)' for the start of a set and spelled \\w out as a literal run of ranges)."""
    assert pattern_error(pattern) is None
    v = compile_validator({"type": "string", "pattern": pattern})
    assert (schema_error(v, text) is None) == (re.search(pattern, text) is not None)


@pytest.mark.parametrize("pattern", ["(?x)a # [ \n \\w", "(?x: a # x\n)b"])
def test_a_verbose_mode_comment_is_refused(pattern: str) -> None:
    """Invariant: a # comment in verbose mode (whose brackets the rewrite cannot tell from syntax) is refused."""
    assert "comment" in (pattern_error(pattern) or "")
    assert pattern_error("(?x) a \\w") is None


@pytest.mark.parametrize(("pattern", "text"), [(r"^\N{LATIN SMALL LETTER A}+$", "aa"), (r"\\\N{DIGIT ONE}", "\\1"),
                                               (r"[\N{DIGIT ONE}-\N{DIGIT THREE}]", "2")])
def test_a_named_character_is_accepted_and_matches_as_in_re(pattern: str, text: str) -> None:
    """Invariant: \\N{NAME}'s braces are not a literal '{' (the brace check refused every named character)."""
    assert pattern_error(pattern) is None
    v = compile_validator({"type": "string", "pattern": pattern})
    assert (schema_error(v, text) is None) == (re.search(pattern, text) is not None)
    assert pattern_error(r"\N{LATIN SMALL LETTER A}{e<=1}")  # a fuzzy brace after it is still refused
