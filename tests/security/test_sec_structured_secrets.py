"""An upstream that echoes the API key inside what it answers: JSON replies, validation failures, tool calls.

Invariant: whatever the model's reply holds, an OutputValidationError (its message, ``raw_text``, ``repr``,
``to_dict()`` and the wire's error object) holds no run of 8 or more characters of any key the process knows.
(The re-ask feedback goes back to the same upstream that sent the key, so it may quote it; nothing else may.)
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_helpers import leaked, secret_keys

from providers.errors import OutputValidationError
from providers.mock import MockProvider
from providers.redact import remember_secret
from theory_modal.wire import error_dict

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Owner:
    """Keeps a remembered key alive for one example only."""


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "e": {"enum": ["a", "b"]}},
          "required": ["n"], "additionalProperties": False}
TOOLS = [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}},
                                      "required": ["n"]}}]


def _answers(key: str, filler: int) -> dict[str, tuple[str, object]]:
    pad = "x" * filler
    return {
        "text": ("schema", f"{pad}not json {key} at all"),
        "value": ("schema", json.dumps({"n": pad + key})),
        "enum": ("schema", json.dumps({"n": 1, "e": pad + key})),
        "property_name": ("schema", json.dumps({"n": 1, pad + key: 1})),
        "truncated_json": ("schema", '{"n": "' + pad + key),
        "tool_args": ("tools", {"tool_calls": [{"name": "f", "arguments": {"n": pad + key}}]}),
        "tool_args_text": ("tools", {"tool_calls": [{"name": "f", "arguments": pad + key}]}),
        "tool_name": ("tools", {"tool_calls": [{"name": pad + key, "arguments": {"n": 1}}]}),
        "tool_id": ("tools", {"tool_calls": [{"id": key, "name": "f", "arguments": {"n": "x"}}]}),
    }


@SETTINGS
@given(key=secret_keys(), where=st.sampled_from(sorted(_answers("k", 0))), filler=st.integers(0, 700))
def test_no_key_fragment_in_any_output_validation_error(key, where, filler):
    owner = _Owner()
    remember_secret(key, owner)
    kind, answer = _answers(key, filler)[where]
    mock = MockProvider().enqueue(answer)
    try:
        if kind == "schema":
            mock.chat("hi", output_schema=SCHEMA, output_retries=0)
        else:
            mock.chat("hi", tools=TOOLS, output_retries=0)
    except OutputValidationError as exc:
        outputs = [str(exc), repr(exc), exc.raw_text, json.dumps(exc.to_dict()), json.dumps(error_dict(exc)),
                   json.dumps(exc.to_dict(), ensure_ascii=False)]
        assert not leaked(key, *outputs), (where, leaked(key, *outputs))
    else:
        raise AssertionError(f"{where}: an invalid answer was accepted")
    del owner
