"""Structured output and tool calls: validate what the model said, re-ask when it does not validate.

- :class:`OutputSchema` wraps a JSON Schema dict (validated with ``jsonschema``) or a pydantic model class
  (validated by pydantic itself, so ``reply.data`` is an instance of it).
- :func:`complete` / :func:`acomplete` are the re-ask loop, in the instructor style: a reply whose JSON (or a tool
  call whose arguments) does not validate is sent back with the validation error as the reason to try again,
  at most ``output_retries`` times; then :class:`~providers.errors.OutputValidationError` with the last raw
  text. Usage and cost add up over every attempt, because every attempt was paid for.
- :func:`finish_stream` validates a streamed reply once: its text has already reached the caller, so a stream
  is never re-asked (a second answer appended to the first would be neither).

Providers supply one *attempt* (extra messages in, :class:`Turn` out); everything else here is shared.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from providers.contract import LLMReply
from providers.errors import OutputValidationError
from providers.usage import Usage, make_usage

if TYPE_CHECKING:
    from providers.base import ChatRequest

__all__ = [
    "OutputSchema",
    "Turn",
    "Mismatch",
    "compile_validator",
    "within_budget",
    "pattern_matches",
    "pattern_error",
    "PATTERN_SECONDS",
    "TooCostly",
    "VALIDATION_BUDGET",
    "STEPS_PER_VALUE",
    "non_local_refs",
    "dangling_refs",
    "loops_forever",
    "schema_error",
    "sum_usage",
    "build_reply",
    "complete",
    "acomplete",
    "finish_stream",
]

_MAX_ERROR_CHARS = 600
#: Keyword checks one validation may run: this many, plus :data:`STEPS_PER_VALUE` for every value (object, array,
#: scalar) in the instance. ``$ref`` makes a schema a DAG, so ``anyOf`` branches that share a ``$def`` multiply:
#: a 1 KB schema took minutes (3**n checks) on a failing value. Real schemas take a few checks per value (a 97 KB
#: schema: 2,400 for its whole instance); past the budget a validation stops with :class:`TooCostly`.
VALIDATION_BUDGET = 20_000
STEPS_PER_VALUE = 100
#: Seconds that all ``pattern`` / ``patternProperties`` matches of one validation may take together. A caller's
#: pattern can backtrack exponentially (``^(a|aa)+$`` against 60 characters and a ``!``: hours in Python's ``re``,
#: which has no timeout), and the reply it is matched against comes from a model: it would hold a container core.
#: Patterns are matched with the ``regex`` module (``re``-compatible syntax) under this time limit instead; past
#: it the validation stops with :class:`TooCostly`, like a schema whose branches multiply.
PATTERN_SECONDS = 0.5
_steps = threading.local()


class TooCostly(Exception):
    """A validation ran out of :data:`VALIDATION_BUDGET` keyword checks (a schema whose branches multiply)."""


def _counted(check: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(check)
    def step(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        left = getattr(_steps, "left", None)
        if left is not None:  # inside within_budget(): count, and stop when the budget is spent
            if left <= 0:
                raise TooCostly("out of keyword checks")
            _steps.left = left - 1
        return check(validator, value, instance, schema)

    return step


def _values(instance: Any) -> int:
    count, stack = 0, [instance]
    while stack:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


@contextlib.contextmanager
def within_budget(instance: Any = None) -> Iterator[None]:
    """Validations run inside share one budget (per thread): :data:`VALIDATION_BUDGET` keyword checks plus
    :data:`STEPS_PER_VALUE` per value of ``instance`` (a long reply may take proportionally longer, no more)."""
    if getattr(_steps, "left", None) is not None:  # nested: the outer budget is shared, not renewed
        yield
        return
    _steps.left = VALIDATION_BUDGET + STEPS_PER_VALUE * _values(instance)
    _steps.until = time.monotonic() + PATTERN_SECONDS
    try:
        yield
    finally:
        _steps.left = None
        _steps.until = None


def pattern_matches(pattern: str, text: str) -> bool:
    """``re.search(pattern, text)``, but bounded: inside :func:`within_budget` by what is left of the
    validation's :data:`PATTERN_SECONDS`, else by :data:`PATTERN_SECONDS`; raises :class:`TooCostly` past it."""
    import regex  # lazy: only schemas with patterns pay for the import

    until = getattr(_steps, "until", None)
    timeout = PATTERN_SECONDS if until is None else until - time.monotonic()
    if timeout <= 0:
        raise TooCostly("out of pattern time")
    try:
        return regex.search(_as_re_reads(pattern), text, timeout=timeout) is not None
    except TimeoutError:
        raise TooCostly("a pattern took too long to match") from None


#: How large a pattern may grow when ``regex`` compiles it, in set items times repeat copies: ``regex`` unrolls
#: a repeat's minimum count (``a{4294967294}`` asks for gigabytes, where ``re`` keeps a count), and ``\\w`` spelled
#: out as ``re``'s set holds ~735 ranges (``\\w{136}`` is past it; ``\\w{1,255}`` is not). About 11 MB at most.
MAX_PATTERN_REPEATS = 100_000
_QUANTIFIER = re.compile(r"\{\d*(?:,\d*)?\}")
_SET_OPERATORS = ("--", "&&", "~~", "||")


def _after_comment(pattern: str, i: int) -> int:
    """The index just past a ``(?#...)`` comment starting at ``i`` (its escapes skipped, as ``re`` reads it)."""
    j = i + 3
    while j < len(pattern) and pattern[j] != ")":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _regex_reading_differs(pattern: str) -> str | None:
    """Where ``regex`` would read ``pattern`` differently from ``re`` although both compile it, or None: an
    unescaped ``{`` that ``re`` takes literally (``regex`` reads ``{e<=1}`` as a fuzzy match) and, inside a set, a
    ``[`` or doubled operator (``re`` warns of them; ``regex`` reads ``[[:alpha:]]`` as a POSIX class)."""
    i, n, in_set = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if pattern.startswith("\\N{", i):  # a named character, \N{DIGIT ONE}: its braces are no quantifier
            i = pattern.find("}", i) % (n + 1) + 1
            continue
        if c == "\\":
            i += 2
            continue
        if not in_set and pattern.startswith("(?#", i):  # a comment: its brackets and braces are not syntax
            i = _after_comment(pattern, i)
            continue
        if in_set:
            if c == "]" and i > set_start:
                in_set = False
            elif c == "[" or pattern.startswith(_SET_OPERATORS, i):
                return "a nested set or set operator inside [...] (escape the character: \\[, \\-, \\&, \\~, \\|)"
        elif c == "[":
            in_set = True
            set_start = i + (2 if pattern.startswith("^", i + 1) else 1)  # a "]" first in the set is literal
        elif c == "{" and not _QUANTIFIER.match(pattern, i) or c == "{" and pattern.startswith("{}", i):
            return "a literal '{' (write it as \\{)"
        i += 1
    return None


def _repeats(parsed: Any) -> int:
    """How large a parsed pattern grows when ``regex`` compiles it: set items and atoms, each repeat's body
    counted as many times as its minimum count (the copies ``regex`` unrolls), multiplied through nesting."""
    from re import _constants as c

    total = 0
    for op, av in parsed:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            total += max(1, av[0]) * max(1, _repeats(av[2]))
        elif op is c.SUBPATTERN:
            total += _repeats(av[3])
        elif op is c.BRANCH:
            total += sum(_repeats(b) for b in av[1])
        elif op in (c.ASSERT, c.ASSERT_NOT):
            total += _repeats(av[1])
        elif op is c.ATOMIC_GROUP:
            total += _repeats(av)
        elif op is c.GROUPREF_EXISTS:
            total += _repeats(av[1]) + (_repeats(av[2]) if av[2] else 0)
        elif op is c.IN:
            total += len(av)
        else:
            total += 1
    return total


#: Longest text the class rewrite of one pattern may produce (each \\w spelled out is ~2 KB, each \\b ~9 KB).
_MAX_REWRITE_CHARS = 50_000


def _set_char(cp: int) -> str:
    """One code point inside a character set: itself when alphanumeric (never special there), else escaped."""
    c = chr(cp)
    if c.isalnum():
        return c
    return f"\\x{cp:02x}" if cp <= 0xFF else f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


@functools.lru_cache(maxsize=None)
def _re_class(letter: str) -> str:
    """The body of a character set holding exactly what ``re`` (Unicode mode) means by ``\\w``, ``\\s`` or
    ``\\d`` (``regex`` follows newer Unicode properties: 30,468 characters differ for ``\\w`` alone), or by their
    negations ``\\W`` ``\\S`` ``\\D``, as ranges."""
    test = {"w": lambda c: c.isalnum() or c == "_", "s": str.isspace, "d": str.isdecimal}[letter.lower()]
    want = letter.islower()
    spans: list[str] = []
    start = None
    for cp in range(0x110001):
        inside = cp <= 0x10FFFF and test(chr(cp)) == want
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            spans.append(_set_char(start) if start == cp - 1 else f"{_set_char(start)}-{_set_char(cp - 1)}")
            start = None
    return "".join(spans)


def _outside_set(letter: str) -> str:
    """``\\w`` (or ``\\W`` ...) outside a set: re's set, or its negation (short), out of IGNORECASE's reach."""
    return f"(?-i:[{'' if letter.islower() else '^'}{_re_class(letter.lower())}])"


def _as_re_reads(pattern: str) -> str:
    """See :func:`_translated`."""
    return _translated(pattern)[0]


@functools.lru_cache(maxsize=256)
def _translated(pattern: str) -> tuple[str, bool]:
    """``pattern`` for the ``regex`` module with ``re``'s meaning of ``\\w \\s \\d \\b`` (and their
    negations) spelled out as explicit sets, so a match means what ``re.search`` would have said. Patterns in
    ASCII mode (``(?a)``) keep their classes (there both modules agree), all but ``\\B`` (``re``'s never matches
    an empty string). Also says whether a class sat inside a set (there ``regex`` case-folds it under IGNORECASE
    where ``re`` does not; :func:`pattern_error` refuses that mix). Raises ValueError past
    :data:`_MAX_REWRITE_CHARS` (many classes would make a pattern slow to compile)."""
    from re import _parser

    ascii_mode = bool(_parser.parse(pattern).state.flags & re.ASCII)
    in_set_class = False
    out: list[str] = []
    size = 0
    i, n, in_set, set_start = 0, len(pattern), False, 0
    while i < n:
        c = pattern[i]
        if size > _MAX_REWRITE_CHARS:
            raise ValueError(f"it has too many \\w, \\s, \\d or \\b classes (spelled out as re reads them, past "
                             f"{_MAX_REWRITE_CHARS:,} characters); use fewer, or (?a) for ASCII classes")
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if ascii_mode and e in "wWsSdDb" or in_set and e in "bB":
                piece = pattern[i:i + 2]
            elif ascii_mode and e == "B":  # ASCII classes agree; re's \B never matches an empty string
                piece = r"(?:\B(?:(?<=[\s\S])|(?=[\s\S])))"
            elif e in "wWsSdD":
                piece = _re_class(e) if in_set else _outside_set(e)  # re does not case-fold a class
                in_set_class = in_set_class or in_set
            elif e in "bB":
                w = _outside_set("w")
                piece = (f"(?:(?<={w})(?!{w})|(?<!{w})(?={w}))" if e == "b" else
                         f"(?:(?<={w})(?={w})|(?<!{w})(?!{w})(?:(?<=[\\s\\S])|(?=[\\s\\S])))")
            else:
                piece = pattern[i:i + 2]
            out.append(piece)
            size += len(piece)
            i += 2
            continue
        if not in_set and pattern.startswith("(?#", i):
            end = _after_comment(pattern, i)
            out.append(pattern[i:end])
            i = end
            continue
        if in_set and c == "]" and i > set_start:
            in_set = False
        elif not in_set and c == "[":
            in_set = True
            set_start = i + (2 if pattern.startswith("^", i + 1) else 1)
            out.append(pattern[i:set_start])
            i = set_start
            continue
        out.append(c)
        size += 1
        i += 1
    return "".join(out), in_set_class


def _scoped(parsed: Any, flag: int) -> bool:
    """Whether a group switches ``flag`` on or off for part of the pattern (e.g. ``(?a:...)``)."""
    from re import _constants as c

    for op, av in parsed:
        if op is c.SUBPATTERN and ((av[1] | av[2]) & flag or _scoped(av[3], flag)):
            return True
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and _scoped(av[2], flag):
            return True
        if op is c.BRANCH and any(_scoped(b, flag) for b in av[1]):
            return True
        if op in (c.ASSERT, c.ASSERT_NOT) and _scoped(av[1], flag):
            return True
        if op is c.ATOMIC_GROUP and _scoped(av, flag):
            return True
        if op is c.GROUPREF_EXISTS and (_scoped(av[1], flag) or (av[2] and _scoped(av[2], flag))):
            return True
    return False


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` cannot be matched, or None. It must be a pattern Python's ``re`` compiles and that the
    ``regex`` matcher reads the same way (its extra syntax, fuzzy braces and POSIX classes are refused), with
    repeat counts that stay small when ``regex`` compiles them."""
    import regex
    from re import _parser

    why = _regex_reading_differs(pattern)
    if why:
        return f"it has {why}"
    try:
        parsed = _parser.parse(pattern)
        if "#" in pattern and (parsed.state.flags & re.VERBOSE or _scoped(parsed, re.VERBOSE)):
            return "it has a # comment in verbose mode ((?x)); drop the comment or the flag"
        if _scoped(parsed, re.ASCII):
            return "it switches ASCII mode for part of the pattern ((?a:...)); put (?a) at its start instead"
        text, class_in_set = _translated(pattern)
        if _repeats(_parser.parse(text)) > MAX_PATTERN_REPEATS:
            return (f"it grows past {MAX_PATTERN_REPEATS:,} items when compiled (its minimum repeat counts multiply; "
                    "use a smaller minimum, e.g. {0,n}, or + and *)")
        if class_in_set and (parsed.state.flags & re.IGNORECASE or _scoped(parsed, re.IGNORECASE)):
            return ("it puts \\w, \\s or \\d inside [...] under the IGNORECASE flag (write the class outside the "
                    "set, e.g. (?:\\w|-) for [\\w-])")
        regex.compile(text)
    except (re.error, regex.error, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        return str(exc)[:200] or type(exc).__name__
    return None


def _pattern(validator: Any, patrn: Any, instance: Any, schema: Any) -> Any:
    """jsonschema's ``pattern`` keyword, matched by :func:`pattern_matches`."""
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not pattern_matches(patrn, instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _additional_properties(validator: Any, aP: Any, instance: Any, schema: Any) -> Any:
    """jsonschema's ``additionalProperties``, with ``patternProperties`` matched by :func:`pattern_matches`
    (jsonschema's own joins the patterns and runs ``re.search`` on every key, without a time limit)."""
    from jsonschema._utils import extras_msg
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = {k for k in instance if k not in properties and not any(pattern_matches(p, k) for p in patterns)}
    if validator.is_type(aP, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], aP, path=extra)
    elif not aP and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            listed = ", ".join(repr(each) for each in sorted(patterns))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {listed}")
        else:
            error = "Additional properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(extras, key=str)))


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
    """jsonschema's ``patternProperties`` keyword, matched by :func:`pattern_matches`."""
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            if pattern_matches(patrn, key):
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


@functools.lru_cache(maxsize=256)
def _compiled(canonical: str) -> Any:
    from jsonschema import validators  # lazy: only requests with a schema pay for the import
    from referencing import Registry

    schema = json.loads(canonical)
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    keywords = dict(cls.VALIDATORS)
    for name, bounded in (("pattern", _pattern), ("patternProperties", _pattern_properties),
                          ("additionalProperties", _additional_properties)):
        if name in keywords:
            keywords[name] = bounded  # re.search has no timeout (PATTERN_SECONDS)
    counted = validators.extend(cls, {k: _counted(v) for k, v in keywords.items()})
    # An explicit, empty registry: without one, jsonschema fetches any remote ``$ref`` over the network while
    # validating, so a caller's schema could make a deployed function dial any host (cloud metadata included).
    # With it, only references inside the schema resolve (``check_schema_refs`` refuses the rest up front).
    return counted(schema, registry=Registry())


def loops_forever(schema: dict[str, Any]) -> bool:
    """Whether validating any value recurses without end (a ``$ref`` cycle that never descends into the
    instance, e.g. ``{"$ref": "#"}``). Probed on a few small values, before any network."""
    validator = compile_validator(schema)
    try:
        with within_budget():
            for probe in (None, 0, "", [], {}, [0], {"a": 0}):
                for _ in validator.iter_errors(probe):
                    pass
    except RecursionError:
        return True
    except TooCostly:
        raise
    except Exception:  # noqa: BLE001 - other problems (dangling refs) are reported by their own checks
        return False
    return False


def dangling_refs(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Every local ``$ref`` / ``$dynamicRef`` that does not resolve inside ``schema``, as (where, ref): found
    before any network, so a request whose schema cannot be used is refused instead of failing after the call.
    (Subschemas with their own ``$id`` change the base of their references; they are left to validation time.)"""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    refs = [(where, ref) for where, ref in _refs(schema) if ref.startswith("#")]
    if not refs or _has_nested_id(schema):
        return []
    spec = specification_with(str(schema.get("$schema", "")), default=DRAFT202012)
    resource = spec.create_resource(schema)
    base = resource.id() or "urn:theory-modal:output-schema"
    resolver = Registry().with_resource(base, resource).resolver(base_uri=base)
    out = []
    for where, ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            out.append((where, ref))
    return out


def _has_nested_id(schema: object, top: bool = True) -> bool:
    if isinstance(schema, dict):
        if not top and isinstance(schema.get("$id"), str):
            return True
        return any(_has_nested_id(v, False) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_nested_id(v, False) for v in schema)
    return False


def _refs(schema: object, path: str = "#") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    stack: list[tuple[object, str]] = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str):
                    out.append((where, value))
                stack.append((value, f"{where}/{key}"))
        elif isinstance(node, list):
            stack.extend((v, f"{where}/{i}") for i, v in enumerate(node))
    return out


def non_local_refs(schema: object) -> list[tuple[str, str]]:
    """Every ``$ref`` / ``$dynamicRef`` that points outside the schema (anything not starting with ``#``), as
    (where, ref). Such references would need a fetch; they are refused before any network."""
    return [(where, ref) for where, ref in _refs(schema) if not ref.startswith("#")]


def compile_validator(schema: dict[str, Any]) -> Any:
    """A ``jsonschema`` validator for ``schema`` (its own ``$schema`` draft, else 2020-12), cached by content.
    Raises ``jsonschema.SchemaError`` when the schema itself is not valid JSON Schema."""
    return _compiled(json.dumps(schema, sort_keys=True))


def schema_error(validator: Any, instance: Any) -> str | None:
    """The most relevant validation error as one line (``at $.age: -1 is less than the minimum of 0``), or None."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        with within_budget(instance):
            error = best_match(validator.iter_errors(instance))
    except TooCostly:  # the schema passed its own probes; this value makes its branches multiply
        return ("the reply could not be checked: validating it took too many steps or too long (the schema's "
                "anyOf/oneOf/$ref branches multiply, or a pattern backtracks on it); reply with a simpler value")
    except Unresolvable as exc:  # the schema's fault, not the reply's (dangling_refs catches most up front)
        from providers.errors import InvalidRequestError

        raise InvalidRequestError(f"the schema has a $ref that points nowhere: {_clip(str(exc))[:200]}") from None
    except RecursionError:  # a $ref cycle that never descends into the instance ({"$ref": "#"})
        from providers.errors import InvalidRequestError

        raise InvalidRequestError("the schema's $ref chain loops without ever reaching a type (e.g. {\"$ref\": \"#\"})") from None
    if error is None:
        return None
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return _clip(f"at {where}: {error.message}")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _is_model_class(obj: object) -> bool:
    return isinstance(obj, type) and callable(getattr(obj, "model_json_schema", None)) and callable(
        getattr(obj, "model_validate_json", None)
    )


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """What ``output_schema`` asks for: ``json_schema`` (always; a pydantic class contributes its own),
    ``model`` (the pydantic class, when one was passed) and ``name`` (for ``response_format``)."""

    json_schema: dict[str, Any]
    model: type | None = None
    name: str = "output"

    @classmethod
    def of(cls, spec: Any) -> OutputSchema:
        """From a JSON Schema dict or a pydantic model class. Raises ``ValueError``/``SchemaError`` on others."""
        if _is_model_class(spec):
            schema = spec.model_json_schema()
            compile_validator(schema)
            return cls(schema, spec, _name(spec.__name__))
        if isinstance(spec, dict):
            compile_validator(spec)
            return cls(spec, None, _name(str(spec.get("title") or "output")))
        raise ValueError(f"output_schema must be a JSON Schema dict or a pydantic model class, got {type(spec).__name__}")

    def parse(self, text: str) -> Any:
        """The validated data in ``text``; raises :class:`Mismatch` (with the reason) when it is not."""
        if self.model is not None:
            try:
                return self.model.model_validate_json(text)
            except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, without importing pydantic
                raise Mismatch(_clip(_pydantic_message(exc))) from None
        try:
            value = strict_json(text)
        except ValueError as exc:
            raise Mismatch(f"the reply is not JSON ({_json_problem(exc)})") from None
        problem = schema_error(compile_validator(self.json_schema), value)
        if problem:
            raise Mismatch(problem)
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def strict_json(text: str) -> Any:
    """Standard JSON only: ``NaN``/``Infinity`` and numbers that overflow to infinity are refused (they cannot
    cross the wire as JSON), a lone surrogate escape (``"\\ud800"``: not text, so no UTF-8 output can hold
    it) is refused, and nesting too deep for the parser is a ``ValueError``, never a RecursionError."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate escape (e.g. \\ud800), which is not text")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def json_depth(value: Any) -> int:
    """How many containers deep ``value`` is (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((v, depth) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def _json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos}"
    return str(exc)


def _name(text: str) -> str:
    """A ``response_format`` name: OpenAI allows ``[A-Za-z0-9_-]{1,64}``."""
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in text)[:64]
    return cleaned or "output"


def _pydantic_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for e in errors()[:5]:
        loc = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.get("loc", ()))
        parts.append(f"at {loc}: {e.get('msg')}")
    return "; ".join(parts)


@dataclass(slots=True)
class Turn:
    """One raw answer from a provider, before validation. ``tool_calls`` hold raw JSON argument strings:
    ``[{"id", "name", "arguments": str}]``."""

    text: str
    usage: Usage
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class Mismatch(ValueError):
    """A reply that did not validate; ``feedback`` is what to send back to the model to re-ask."""

    def __init__(self, reason: str, feedback: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.feedback = feedback or []


def sum_usage(usages: Sequence[Usage]) -> Usage:
    """Every attempt's usage added up; the cost is unknown (None) if any attempt's cost was unknown."""
    costs = [u["usd_micros"] for u in usages]
    return make_usage(
        sum(u["tokens_in"] for u in usages),
        sum(u["tokens_out"] for u in usages),
        sum(u["latency_ms"] for u in usages),
        None if any(c is None for c in costs) else sum(costs),  # type: ignore[arg-type]
    )


def _call_ids(raw_calls: Sequence[dict[str, Any]]) -> list[str]:
    """The ids of a turn's calls as ``history`` accepts them back: the upstream's own id when it is a valid,
    unique call id, else ``call_<i>``. (A reply whose ``tool_calls`` could not be sent back as the next turn's
    history would break the tool loop; the ids are ours to choose, the upstream sees them only in that history.)"""
    from providers.request import _CALL_ID

    ids: list[str] = []
    for i, raw in enumerate(raw_calls):
        cid = raw.get("id")
        if not isinstance(cid, str) or not _CALL_ID.fullmatch(cid) or cid in ids:
            cid = f"call_{i}"
            while cid in ids:
                cid += "_"
        ids.append(cid)
    return ids


def _check_tool_calls(req: ChatRequest, turn: Turn) -> list[dict[str, Any]]:
    from providers.request import MAX_STRUCTURE_DEPTH

    tools = {t["name"]: t for t in req.tools}
    calls: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []  # (call id, reason)
    ids = _call_ids(turn.tool_calls)
    misplaced: set[str] = set()  # calls tool_choice forbids: their feedback must not say "call the tool again"
    for i, raw in enumerate(turn.tool_calls):
        call_id = ids[i]
        name = str(raw.get("name") or "")
        arguments = raw.get("arguments")
        tool = tools.get(name)
        if tool is None:
            problems.append((call_id, f"there is no tool named {name[:64]!r}; the tools are {', '.join(tools)[:300]}"))
            continue
        forced = req.tool_choice["name"] if isinstance(req.tool_choice, dict) else None
        if req.tool_choice == "none" or (forced is not None and name != forced):
            must = "answer in text: tool_choice is 'none'" if forced is None else f"call {forced} (tool_choice)"
            problems.append((call_id, f"{name} may not be called here; {must}"))
            misplaced.add(call_id)
            continue
        if isinstance(arguments, str):
            try:
                arguments = strict_json(arguments) if arguments.strip() else {}
            except ValueError as exc:
                problems.append((call_id, f"the arguments of {name} are not JSON ({_json_problem(exc)})"))
                continue
        if not isinstance(arguments, dict):
            problems.append((call_id, f"the arguments of {name} must be a JSON object"))
            continue
        if json_depth(arguments) > MAX_STRUCTURE_DEPTH:  # history would refuse them back: re-ask instead
            problems.append((call_id, f"the arguments of {name} are nested more than {MAX_STRUCTURE_DEPTH} levels deep"))
            continue
        problem = schema_error(compile_validator(tool["parameters"]), arguments)
        if problem:
            problems.append((call_id, f"the arguments of {name} do not validate: {problem}"))
            continue
        calls.append({"id": call_id, "name": name, "arguments": arguments})
    if problems:
        feedback: list[dict[str, Any]] = [{
            "role": "assistant",
            "content": turn.text or None,
            "tool_calls": [
                {"id": ids[i], "name": str(c.get("name") or ""),
                 "arguments": c.get("arguments") if isinstance(c.get("arguments"), str)
                 else json.dumps(c.get("arguments"))}
                for i, c in enumerate(turn.tool_calls)
            ],
        }]
        reasons = dict(problems)
        for cid in ids:
            feedback.append({
                "role": "tool", "tool_call_id": cid,
                "content": f"Error: {reasons[cid]}." if cid in misplaced else
                f"Error: {reasons[cid]}. Call the tool again with arguments that validate."
                if cid in reasons else "Not run: another call in this turn was invalid.",
            })
        raise Mismatch("; ".join(reason for _, reason in problems), feedback)
    return calls


def build_reply(req: ChatRequest, provider: str, turn: Turn, usage: Usage | None = None) -> LLMReply:
    """Validate ``turn`` against the request's tools and output schema; raise :class:`Mismatch` or return the
    reply (``data`` / ``tool_calls`` filled, ``finish_reason`` ``"tool_calls"`` when the model called tools)."""
    usage = usage or turn.usage
    if turn.tool_calls and req.tools:
        calls = _check_tool_calls(req, turn)
        return LLMReply(turn.text, provider, req.model, usage, finish_reason="tool_calls", tool_calls=calls)
    if req.tools and (req.tool_choice == "required" or isinstance(req.tool_choice, dict)):
        # The caller asked for a call (an upstream without tool_choice, e.g. Ollama, may answer in text anyway):
        # a text reply would leave reply.tool_calls None where the caller's loop expects calls.
        which = req.tool_choice["name"] if isinstance(req.tool_choice, dict) else "one of the tools"
        raise Mismatch(f"tool_choice requires a call of {which}, but the model answered in text", [
            {"role": "assistant", "content": turn.text},
            {"role": "user", "content": f"You must call {which} now (a tool call, not text)."},
        ])
    data = None
    if req.output is not None:
        try:
            data = req.output.parse(turn.text)
        except Mismatch as m:
            m.feedback = [
                {"role": "assistant", "content": turn.text},
                {"role": "user", "content": (
                    f"Your reply did not validate against the required JSON Schema: {m.reason}. "
                    "Reply again with only the corrected JSON, nothing else."
                )},
            ]
            raise
    # No tools were offered, so a call the upstream reports anyway is not a reply's: "tool_calls" without
    # tool_calls would send a caller's tool loop after calls that are not there.
    finish = "stop" if turn.finish_reason in (None, "tool_calls") else turn.finish_reason
    return LLMReply(turn.text, provider, req.model, usage, finish_reason=finish, data=data)


def _give_up(req: ChatRequest, provider: str, turn: Turn, usage: Usage, reason: str, attempts: int) -> OutputValidationError:
    what = "tool call" if turn.tool_calls and req.tools else "reply"
    from providers.redact import redact

    reason = _clip(redact(reason))  # whole text redacted first, then cut: a hostile reply can make it any length
    return OutputValidationError(
        f"the model's {what} did not validate after {attempts} attempt(s): {reason}. Raise output_retries, "
        "simplify the schema, or use a model with native structured output",
        raw_text=turn.text if not turn.tool_calls else json.dumps(turn.tool_calls), usage=usage,
        provider=provider, model=req.model, attempts=attempts,
    )


def _note_reask(req: ChatRequest, turn: Turn, attempts: int, giving_up: bool) -> None:
    """A span event on the current call (no-op without telemetry): which attempt did not validate and whether
    it is re-asked. Never the reason text: a validation message can quote the reply."""
    from providers import telemetry

    telemetry.note_event("theory_modal.output_invalid" if giving_up else "theory_modal.reask", {
        "theory_modal.reask.attempt": attempts,
        "theory_modal.reask.what": "tool_call" if turn.tool_calls and req.tools else "reply",
        "theory_modal.error.kind": OutputValidationError.kind,
    })


def complete(req: ChatRequest, provider: str, attempt: Callable[[list[dict[str, Any]]], Turn]) -> LLMReply:
    """The re-ask loop: ``attempt(extra_messages)`` is one full provider call (its own retries included)."""
    if req.output is None and not req.tools:
        return build_reply(req, provider, attempt([]))  # plain text: nothing to validate, never re-asked
    extra: list[dict[str, Any]] = []
    usages: list[Usage] = []
    while True:
        turn = attempt(extra)
        usages.append(turn.usage)
        total = sum_usage(usages) if len(usages) > 1 else turn.usage
        try:
            return build_reply(req, provider, turn, total)
        except Mismatch as m:
            giving_up = len(usages) > req.output_retries
            _note_reask(req, turn, len(usages), giving_up)
            if giving_up:
                raise _give_up(req, provider, turn, total, m.reason, len(usages)) from None
            extra = extra + m.feedback


async def acomplete(
    req: ChatRequest, provider: str, attempt: Callable[[list[dict[str, Any]]], Awaitable[Turn]]
) -> LLMReply:
    """Async twin of :func:`complete`."""
    if req.output is None and not req.tools:
        return build_reply(req, provider, await attempt([]))
    extra: list[dict[str, Any]] = []
    usages: list[Usage] = []
    while True:
        turn = await attempt(extra)
        usages.append(turn.usage)
        total = sum_usage(usages) if len(usages) > 1 else turn.usage
        try:
            return build_reply(req, provider, turn, total)
        except Mismatch as m:
            giving_up = len(usages) > req.output_retries
            _note_reask(req, turn, len(usages), giving_up)
            if giving_up:
                raise _give_up(req, provider, turn, total, m.reason, len(usages)) from None
            extra = extra + m.feedback


def finish_stream(req: ChatRequest, provider: str, turn: Turn) -> LLMReply:
    """The final reply of a stream: validated once, never re-asked (its text was already delivered)."""
    try:
        return build_reply(req, provider, turn)
    except Mismatch as m:
        reason = f"{m.reason} (streams are not re-asked: use chat() to re-ask)"
        raise _give_up(req, provider, turn, turn.usage, reason, 1) from None
