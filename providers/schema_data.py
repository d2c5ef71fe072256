"""Deterministic JSON instances from a JSON Schema: how the mock (and LiteLLM's smoke mode) answer
``output_schema`` and tool calls with data that validates, with no model behind them.

Same schema and seed -> same instance. Supported keywords are listed in :data:`SUPPORTED_KEYWORDS`; a schema
using any other assertion (``pattern``, ``not``, ``if``, ...) raises :class:`UnsupportedSchema` naming it,
because no generic generator can promise a valid instance for those. Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable
from typing import Any

__all__ = ["SUPPORTED_KEYWORDS", "UnsupportedSchema", "generate", "seed_for"]

#: Keywords the generator honours (assertions) or may ignore (annotations).
ASSERTIONS = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "format", "$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf",
})
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "discriminator", "nullable", "strict", "name",
})
SUPPORTED_KEYWORDS = ASSERTIONS | ANNOTATIONS

_MAX_DEPTH = 12
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
_FORMATS = {
    "date-time": lambda r: f"2024-0{r.randint(1, 9)}-1{r.randint(0, 9)}T0{r.randint(0, 9)}:30:00Z",
    "date": lambda r: f"2024-0{r.randint(1, 9)}-1{r.randint(0, 9)}",
    "time": lambda r: f"0{r.randint(0, 9)}:30:00Z",
    "email": lambda r: f"{r.choice(_WORDS)}@example.com",
    "uri": lambda r: f"https://example.com/{r.choice(_WORDS)}",
    "url": lambda r: f"https://example.com/{r.choice(_WORDS)}",
    "uuid": lambda r: "12345678-1234-4{0:03d}-8{0:03d}-1234567890ab".format(r.randint(0, 999)),
    "ipv4": lambda r: f"192.0.2.{r.randint(1, 254)}",
    "hostname": lambda r: f"{r.choice(_WORDS)}.example.com",
}


class UnsupportedSchema(ValueError):
    """The schema asks for something the generator cannot promise to satisfy."""


def seed_for(*parts: str) -> int:
    """A stable seed from text (``hash()`` changes per process; this must not)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def generate(schema: Any, seed: int = 0, *, is_valid: Callable[[Any, Any], bool] | None = None) -> Any:
    """An instance of ``schema``. ``is_valid(subschema, value)`` (optional) lets ``oneOf`` pick a branch whose
    value matches exactly one alternative."""
    return _Gen(schema, random.Random(seed), is_valid).value(schema, "#", 0)


class _Gen:
    def __init__(self, root: Any, rng: random.Random, is_valid: Callable[[Any, Any], bool] | None) -> None:
        self.root, self.rng, self.is_valid = root, rng, is_valid

    # ------------------------------------------------------------------ dispatch
    def value(self, schema: Any, path: str, depth: int) -> Any:
        if schema is True or schema == {}:
            return self.rng.choice(_WORDS)
        if schema is False:
            raise UnsupportedSchema(f"{path}: the schema 'false' admits no value")
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"{path}: a schema must be an object or a boolean")
        if depth > _MAX_DEPTH:
            raise UnsupportedSchema(f"{path}: nesting deeper than {_MAX_DEPTH} levels (a required recursive $ref?)")
        unknown = sorted(set(schema) - SUPPORTED_KEYWORDS)
        if unknown:
            raise UnsupportedSchema(f"{path}: keyword {unknown[0]!r} is not supported by the generator")
        if "$ref" in schema:
            return self.value(self._resolve(schema["$ref"], path), schema["$ref"], depth + 1)
        if "allOf" in schema:
            return self.value(self._merge(schema, path), path, depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            if not schema["enum"]:
                raise UnsupportedSchema(f"{path}: an empty enum admits no value")
            return self.rng.choice(schema["enum"])
        if "anyOf" in schema or "oneOf" in schema:
            return self._alternatives(schema, path, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                raise UnsupportedSchema(f"{path}: an empty type list admits no value")
            kind = self.rng.choice(kind)
        if kind is None:
            kind = self._infer(schema)
        make = getattr(self, f"_{kind}", None)
        if make is None:
            raise UnsupportedSchema(f"{path}: unknown type {kind!r}")
        return make(schema, path, depth)

    def _infer(self, schema: dict) -> str:
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema or "minItems" in schema:
            return "array"
        if "minimum" in schema or "maximum" in schema or "multipleOf" in schema:
            return "number"
        return "string"

    def _resolve(self, ref: str, path: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedSchema(f"{path}: only local $ref ('#/$defs/...') is supported, got {ref!r}")
        node: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise UnsupportedSchema(f"{path}: $ref {ref!r} points nowhere")
            node = node[part]
        return node

    def _merge(self, schema: dict, path: str) -> dict:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict) and "$ref" in part:
                part = self._resolve(part["$ref"], path)
            if not isinstance(part, dict):
                raise UnsupportedSchema(f"{path}: allOf parts must be objects")
            for key, val in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **val}
                elif key == "required":
                    merged["required"] = sorted(set(merged.get("required", [])) | set(val))
                elif key in merged and merged[key] != val and key not in ANNOTATIONS:
                    raise UnsupportedSchema(f"{path}: allOf parts disagree on {key!r}")
                else:
                    merged[key] = val
        return merged

    def _alternatives(self, schema: dict, path: str, depth: int) -> Any:
        key = "oneOf" if "oneOf" in schema else "anyOf"
        options = schema[key]
        if not isinstance(options, list) or not options:
            raise UnsupportedSchema(f"{path}: {key} needs a non-empty list")
        rest = {k: v for k, v in schema.items() if k in ASSERTIONS and k not in (key, "$defs", "definitions")}
        order = list(range(len(options)))
        self.rng.shuffle(order)
        for i in order:
            branch = options[i] if not rest else {"allOf": [rest, options[i]]}
            candidate = self.value(branch, f"{path}/{key}/{i}", depth + 1)
            if self.is_valid is None or self.is_valid(schema, candidate):
                return candidate
        raise UnsupportedSchema(f"{path}: no {key} branch gave a value that matches exactly")

    # ------------------------------------------------------------------ types
    def _null(self, schema: dict, path: str, depth: int) -> None:
        return None

    def _boolean(self, schema: dict, path: str, depth: int) -> bool:
        return self.rng.random() < 0.5

    def _bounds(self, schema: dict, path: str, integer: bool) -> tuple[float, float]:
        lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
        if "exclusiveMinimum" in schema:
            ex = schema["exclusiveMinimum"]
            lo = max(lo, (math.floor(ex) + 1) if integer else ex + max(abs(ex) * 1e-9, 1e-6))
        if "exclusiveMaximum" in schema:
            ex = schema["exclusiveMaximum"]
            hi = min(hi, (math.ceil(ex) - 1) if integer else ex - max(abs(ex) * 1e-9, 1e-6))
        if lo == -math.inf and hi == math.inf:
            lo, hi = 0, 100
        elif lo == -math.inf:
            lo = hi - 100
        elif hi == math.inf:
            hi = lo + 100
        if integer:
            lo, hi = math.ceil(lo), math.floor(hi)
        if lo > hi:
            raise UnsupportedSchema(f"{path}: no number satisfies the bounds")
        return lo, hi

    def _integer(self, schema: dict, path: str, depth: int) -> int:
        lo, hi = self._bounds(schema, path, True)
        step = schema.get("multipleOf")
        if step is None:
            return self.rng.randint(int(lo), int(hi))
        return int(self._multiple(step, lo, hi, path))

    def _number(self, schema: dict, path: str, depth: int) -> float | int:
        lo, hi = self._bounds(schema, path, False)
        step = schema.get("multipleOf")
        if step is not None:
            return self._multiple(step, lo, hi, path)
        if self.rng.random() < 0.5 and math.ceil(lo) <= math.floor(hi):
            return self.rng.randint(math.ceil(lo), math.floor(hi))
        value = round(self.rng.uniform(lo, hi), 3)
        return value if lo <= value <= hi else lo

    def _multiple(self, step: float, lo: float, hi: float, path: str) -> float | int:
        """A multiple of ``step`` in [lo, hi] that survives the validator's own float check."""
        if not isinstance(step, (int, float)) or step <= 0:
            raise UnsupportedSchema(f"{path}: multipleOf must be a positive number")
        first, last = math.ceil(lo / step), math.floor(hi / step)
        candidates = list(range(first, min(last, first + 50) + 1))
        self.rng.shuffle(candidates)
        for k in candidates:
            value = k * step
            if isinstance(step, float) and value.is_integer():
                value = int(value)
            if lo <= value <= hi and (isinstance(value, int) and isinstance(step, int) or (value / step).is_integer()):
                return value
        raise UnsupportedSchema(f"{path}: no multiple of {step} lies within the bounds")

    def _string(self, schema: dict, path: str, depth: int) -> str:
        fmt = schema.get("format")
        lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
        if fmt in _FORMATS:
            text = _FORMATS[fmt](self.rng)
            if len(text) >= lo and (hi is None or len(text) <= hi):
                return text
        hi = int(hi) if hi is not None else max(lo, 1) + 24
        if lo > hi:
            raise UnsupportedSchema(f"{path}: minLength is greater than maxLength")
        target = self.rng.randint(lo, min(hi, max(lo, 1) + 24))
        words: list[str] = []
        while len(" ".join(words)) < target:
            words.append(self.rng.choice(_WORDS))
        return " ".join(words)[:target]

    def _array(self, schema: dict, path: str, depth: int) -> list:
        prefix = schema.get("prefixItems") or []
        lo = int(schema.get("minItems", 0))
        hi = schema.get("maxItems")
        hi = int(hi) if hi is not None else lo + 3
        if lo > hi:
            raise UnsupportedSchema(f"{path}: minItems is greater than maxItems")
        items = schema.get("items", True if not prefix else True)
        if items is False:
            hi = min(hi, len(prefix))
        count = self.rng.randint(lo, hi) if depth < _MAX_DEPTH // 2 else lo
        count = max(count, min(len(prefix), hi)) if prefix else count
        out: list = []
        unique = bool(schema.get("uniqueItems"))
        tries = 0
        while len(out) < count:
            i = len(out)
            sub = prefix[i] if i < len(prefix) else items
            value = self.value(sub, f"{path}/{i}", depth + 1)
            tries += 1
            if unique and any(_same(value, v) for v in out):
                if tries > 20 * (count + 1):
                    if len(out) >= lo:
                        break
                    raise UnsupportedSchema(f"{path}: cannot find {lo} distinct items")
                continue
            out.append(value)
        return out

    def _object(self, schema: dict, path: str, depth: int) -> dict:
        props = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        extra = schema.get("additionalProperties", True)
        out: dict[str, Any] = {}
        shallow = depth < _MAX_DEPTH // 2
        for name, sub in props.items():
            if name in required or (shallow and self.rng.random() < 0.5):
                out[name] = self.value(sub, f"{path}/properties/{name}", depth + 1)
        for name in required:
            if name not in out:
                if extra is False:
                    raise UnsupportedSchema(f"{path}: {name!r} is required but additionalProperties is false")
                out[name] = self.value(extra if isinstance(extra, dict) else True, f"{path}/{name}", depth + 1)
        return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality as uniqueItems sees it (1 == 1.0, but True != 1)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or (
        type(a) in (int, float) and type(b) in (int, float) and a == b
    )
