"""``catalog.resolve`` answers refs that resolved before from a cache: a differential check against the
uncached implementation it replaced, on the same inputs (same Processor, or the same error and message)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory_modal.catalog import PROCESSORS, ProcessorRefError, _REF, known_refs, resolve


def resolve_uncached(ref: object):
    """The implementation before the cache (kept verbatim as the reference)."""
    known = ", ".join(known_refs())
    m = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if m is None:
        raise ProcessorRefError(f"malformed processor ref {ref!r}: expected <kind>/<name>[@<version>]; known refs: {known}")
    candidates = [p for p in PROCESSORS if p.kind == m["kind"] and p.name == m["name"]]
    if m["version"] is not None:
        candidates = [p for p in candidates if p.version == int(m["version"])]
    if not candidates:
        raise ProcessorRefError(f"unknown processor ref {ref!r}; known refs: {known}")
    return max(candidates, key=lambda p: p.version)


def outcome(fn, ref: object):
    try:
        return ("ok", fn(ref))
    except Exception as exc:  # noqa: BLE001 - the class and message are what is compared
        return ("error", type(exc), str(exc))


_parts = st.sampled_from(["llm", "mock", "litellm", "x", "LLM", "llm ", ""])
refs = st.one_of(
    st.builds(lambda k, n, v, pad: f"{pad}{k}/{n}{v}{pad}", _parts, _parts,
              st.sampled_from(["", "@1", "@01", "@2", "@0", "@", "@x", "@1@1"]), st.sampled_from(["", " ", "\t"])),
    st.text(max_size=30),
    st.sampled_from([p.ref for p in PROCESSORS]),
    st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(refs=st.lists(refs, min_size=1, max_size=6))
def test_cached_resolve_answers_exactly_as_the_uncached_one_did_even_when_repeated(refs):
    """Same inputs, in sequence and repeated (so cache hits are compared too): same Processor or same error."""
    for ref in refs + refs:
        assert outcome(resolve, ref) == outcome(resolve_uncached, ref)


@pytest.mark.parametrize("ref", ["llm/nope@1", "nope", "llm/mock@9"])
def test_a_failed_ref_fails_again_with_the_known_refs_listed(ref):
    for _ in range(2):
        with pytest.raises(ProcessorRefError, match="known refs: llm/litellm@1, llm/mock@1"):
            resolve(ref)
