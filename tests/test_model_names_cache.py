"""``check_model_string`` remembers strings that passed: a differential check against the uncached grammar on
the same inputs, in sequence and repeated (cache hits included): same result, or the same error and message."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from providers import model_names
from providers.model_names import _check_model_string, check_model_string


def outcome(fn, model, litellm):
    try:
        return ("ok", fn(model, litellm=litellm))
    except Exception as exc:  # noqa: BLE001 - class and message are compared
        return ("error", type(exc).__name__, str(exc))


models = st.one_of(
    st.sampled_from(["mock", "openai/gpt-4o-mini", "gpt-4o-mini", "ollama_chat/qwen2.5:0.5b", "openai/", "/x",
                     "openai//x", "localhost:8080/m", "evil.com/m", "http://x", "a..b", "azure/m", "bedrock/x",
                     "custom/m", "o p", "m\u200b", "m%20", "x" * 201]),
    st.builds(lambda p, n: f"{p}/{n}", st.sampled_from(["openai", "ollama", "nope", "Open", ""]),
              st.text(st.characters(codec="utf-8"), max_size=12)),
    st.text(max_size=20),
    st.none(), st.integers(),
)


@settings(max_examples=300, deadline=None)
@given(calls=st.lists(st.tuples(models, st.sampled_from([True, False, 1, 0, None])), min_size=1, max_size=5))
def test_cached_grammar_answers_exactly_as_the_uncached_one(calls):
    for model, litellm in calls + calls:
        assert outcome(check_model_string, model, litellm) == outcome(_check_model_string, model, litellm)


def test_only_passes_are_remembered_and_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(model_names, "_passed", {})
    monkeypatch.setattr(model_names, "_PASSED_MAX", 3)
    for m in ("m1", "m2", "bad model", "m3", "m4", "m5"):
        try:
            check_model_string(m, litellm=False)
        except Exception:  # noqa: BLE001
            pass
    assert list(model_names._passed) == [("m1", False), ("m2", False), ("m3", False)]
    assert check_model_string("m5", litellm=False) == "m5"  # past the bound: still checked, still passes
