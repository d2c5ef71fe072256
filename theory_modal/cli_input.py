"""What the ``run`` command reads from the user, parsed and checked before anything heavy is imported.

The habits are simonw/llm's: a positional prompt, stdin when no prompt is given or the prompt is ``-``,
``-o key=value`` options whose values are JSON when they parse as JSON. Every mistake is a
:class:`CliInputError` (exit 2, one line) raised here, before litellm (seconds to import) or any network: the
model grammar, an unknown option, a missing key for a vendor whose key variable is known.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

from providers.errors import CredentialsError, InvalidRequestError

__all__ = ["DEFAULT_PROMPT", "CliInputError", "coerce_value", "parse_options", "preflight", "read_prompt"]

DEFAULT_PROMPT = "Hello"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


class CliInputError(InvalidRequestError):
    """A command-line mistake: exit 2 with one line saying what to type instead."""


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity are not JSON: keep the raw text, the option check will refuse it


def coerce_value(key: str, raw: str) -> Any:
    """``"0.2"`` -> ``0.2``, ``'["a"]'`` -> ``["a"]``, ``"hello"`` -> ``"hello"``. A value for a text option
    (``system``, ``stop``) stays text unless it parses to a type that option takes (``-o system=42`` is ``"42"``)."""
    from providers.request import OPTION_TYPES

    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return raw
    types = OPTION_TYPES.get(key)
    if types is not None and str in types and not isinstance(value, types):
        return raw
    return value


def parse_options(values: Iterable[str], *, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``("temperature=0.2", "stop=[\\"x\\"]")`` -> ``{"temperature": 0.2, "stop": ["x"]}``.

    ``given`` holds options already set by dedicated flags (``--temperature``): naming one twice is an error,
    as is any repeated ``-o`` key, so a value is never silently dropped. ``max-tokens`` means ``max_tokens``."""
    out: dict[str, Any] = dict(given or {})
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise CliInputError(f"--option expects key=value (e.g. -o temperature=0.2), got {item!r:.80}")
        if not _KEY.fullmatch(key):
            raise CliInputError(f"--option {item!r:.80}: {key!r:.40} is not an option name (letters, digits, _ and -)")
        key = key.replace("-", "_")
        if key in out:
            raise CliInputError(f"option {key!r} is given twice; give it once")
        out[key] = coerce_value(key, raw)
    return out


def read_prompt(positional: str | None, flag: str | None, stdin: IO[bytes] | None = None,
                stdin_is_tty: bool | None = None) -> str:
    """The prompt: the argument, else ``--prompt``; ``-`` (or neither, with stdin not a terminal) reads stdin.

    Nothing piped in (an empty stdin, e.g. ``< /dev/null`` in CI) falls back to :data:`DEFAULT_PROMPT` when no
    prompt was given, but is an error after an explicit ``-``."""
    if positional is not None and flag is not None:
        raise CliInputError("the prompt is given twice (as an argument and with --prompt); give it once")
    prompt = positional if positional is not None else flag
    # No stdin at all (a closed descriptor 0 makes sys.stdin None) reads as an empty one.
    stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
    tty = stdin_is_tty if stdin_is_tty is not None else (stream is not None and _isatty(stream))
    if prompt == "-" or (prompt is None and not tty):
        data = stream.read() if stream is not None else b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CliInputError("stdin is not UTF-8 text: pipe text in, or give the prompt as an argument") from None
        text = text.rstrip("\r\n")
        if text.strip():
            return text
        if prompt == "-":
            raise CliInputError("the prompt '-' means stdin, and stdin was empty: pipe text in, e.g. echo hi | theory-modal run -")
        return DEFAULT_PROMPT
    return DEFAULT_PROMPT if prompt is None else prompt


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def preflight(provider: str, model: str | None, *, mode: str, adapter: str) -> None:
    """Checks that need neither litellm nor the network, run before either: the model grammar, and (live, local)
    a missing key for a vendor whose key variable is known, with the provider's own message."""
    from providers.registry import default_models, require_litellm
    from providers.request import check_model

    if provider != "litellm":
        return  # other providers (the mock) name their own models and check them at once, without litellm
    effective = check_model(model, default_models["litellm"])
    if adapter != "local":
        return  # on Modal, keys and litellm live in the containers
    require_litellm()
    if mode == "live" and effective:
        from providers.vendors import missing_key_message

        message = missing_key_message(effective)
        if message is not None:
            raise CredentialsError(message, provider="litellm", model=effective)
