"""Secret redaction: every output surface (error messages, ``to_dict()``, logs, batch lines, CLI output,
remote exceptions) passes text through :func:`redact` before it leaves the process.

Two rules make it hard to cut around:

1. **Whole text first, truncate after** (:func:`clip`). Cutting first would leave the head of a key that
   straddles the cut, and a head no longer equals the key.
2. **Fragments, not only whole values.** Every known secret is matched by any 8-character window of it, so a
   key the upstream quotes partly (cut by its own truncation, by ours, or split by a line break) is still
   removed: no run of 8 or more characters of a known key survives.

"Known" secrets are: the values passed to :func:`redact`, the values registered with :func:`remember_secret`
(providers register their explicit ``api_key``), and every environment variable named ``*_KEY``, ``*_TOKEN``,
``*_SECRET``, ``*_PASSWORD`` (and ``*APIKEY``, ``*_PASS``, ``*_PASSWD``), each also in its JSON-escaped and URL-encoded
form. Secrets nobody told us about are caught by shape: bearer/basic credentials, ``Authorization`` headers,
``sk-``-like and other well-known key formats, ``key=``-style query parameters and URL userinfo
(``scheme://user:pass@host``).
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

# json, logging and urllib.parse are imported where they are used, and the shape patterns are compiled on the
# first redaction: every provider imports this module (through providers.errors), and a call that never
# redacts anything (every successful call) should not pay for them at import.

__all__ = [
    "REDACTED",
    "MIN_FRAGMENT",
    "RedactingFilter",
    "clip",
    "install_log_redaction",
    "known_secrets",
    "mask_url",
    "redact",
    "remember_secret",
]

REDACTED = "[REDACTED]"
#: The shortest run of a known secret that is removed; shorter secrets are too likely to be ordinary words.
MIN_FRAGMENT = 8

#: Environment variables whose names end like this hold secrets. Suffixes only: names that merely contain
#: "TOKEN" (``TIKTOKEN_CACHE_DIR``) hold paths, and redacting those would garble ordinary messages.
_SECRET_ENV_SUFFIXES = ("_KEY", "APIKEY", "_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD", "_PASS")

# Shapes of secrets we were not told about. Groups: a kept prefix (group 1) when present.
_SHAPE_SOURCES = (
    # URL userinfo: scheme://user:pass@host  (or scheme://token@host)
    # (the lookbehind starts a scheme only at its first character: without it the scan is quadratic)
    r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*://)(?!\*+@|\[REDACTED\]@)[^/\s@?#]+(?=@)",
    # Authorization headers and bearer/basic credentials, quoted or not
    r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)?\s*)[^\s\"',;}]+",
    r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9_\-.=+/~:]{6,}",
    # query parameters that carry keys (Gemini's ?key=..., signed URLs)
    r"(?i)([?&](?:key|api[_-]?key|apikey|token|access[_-]?token|sig|signature|secret|password)=)[^&\s\"'#]+",
    # key=value / "api_key": "value" forms (compound names only: "key" alone is too common a word)
    (
        r"(?i)(\b(?:api[_-]?key|x-api-key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|secret|"
        r"password|passwd|client[_-]?secret|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]{6,}"
    ),
    # well-known key formats: OpenAI/Anthropic sk-..., AWS access key ids, Google API keys, GitHub, Slack,
    # Hugging Face, Groq, Replicate tokens, JWTs
    r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_\-]{8,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}",
    r"\bAIza[0-9A-Za-z_\-]{20,}",
    r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat|hf|gsk|r8|xox[abprs])_[A-Za-z0-9_\-]{8,}",
    r"\bxox[abprs]-[A-Za-z0-9\-]{8,}",
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*)?",
)


@lru_cache(maxsize=1)
def _shapes() -> tuple[re.Pattern[str], ...]:
    """The shape patterns, compiled once, on first use."""
    return tuple(re.compile(source) for source in _SHAPE_SOURCES)


_remembered: set[str] = set()
_owned: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
#: Reentrant on purpose: known_secrets allocates while holding it, so a garbage collection can run there, and
#: a finalizer it runs may log (an abandoned HTTP stream closing logs at DEBUG through httpcore), and that
#: record passes through RedactingFilter -> redact -> known_secrets on the same thread. With a plain Lock
#: that nested call waits for itself forever (seen as a hung test run).
_lock = threading.RLock()


def remember_secret(value: str | None, owner: object | None = None) -> None:
    """Register a secret this process holds (e.g. a provider's explicit ``api_key``): every :func:`redact`
    call removes it, wherever the text comes from. With ``owner``, only while that object is alive (a
    provider's key is forgotten with the provider; without it, for the life of the process)."""
    if isinstance(value, str) and len(value) >= MIN_FRAGMENT:
        with _lock:
            if owner is None:
                _remembered.add(value)
            else:
                _owned[owner] = value


def _is_secret_env_name(name: str) -> bool:
    return name.upper().endswith(_SECRET_ENV_SUFFIXES)


def known_secrets(*extra: str | None) -> tuple[str, ...]:
    """Every secret value this process knows right now (explicit, remembered, environment), with the encoded
    forms an upstream might quote back (JSON-escaped, URL-encoded). Only values of 8+ characters count."""
    values = {v for v in extra if isinstance(v, str) and len(v) >= MIN_FRAGMENT}
    with _lock:
        values |= _remembered
        values.update(_owned.values())
    for name, value in os.environ.items():
        if value and len(value) >= MIN_FRAGMENT and _is_secret_env_name(name):
            values.add(value)
    return tuple(sorted(values))


@lru_cache(maxsize=64)
def _fragments(secrets: tuple[str, ...]) -> frozenset[str]:
    """All MIN_FRAGMENT-character windows of every secret and of its encoded forms."""
    import json
    from urllib.parse import quote, quote_plus

    grams: set[str] = set()
    for secret in secrets:
        for form in {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}:
            grams.update(form[i : i + MIN_FRAGMENT] for i in range(len(form) - MIN_FRAGMENT + 1))
    return frozenset(grams)


def _scrub_fragments(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every span covered by some window of a known secret with one REDACTED marker (one set lookup
    per position: linear in the text, whatever the number of secrets)."""
    if not secrets or len(text) < MIN_FRAGMENT:
        return text
    grams = _fragments(secrets)
    spans: list[list[int]] = []
    for i in range(len(text) - MIN_FRAGMENT + 1):
        if text[i : i + MIN_FRAGMENT] in grams:
            end = i + MIN_FRAGMENT
            if spans and i <= spans[-1][1]:
                spans[-1][1] = end
            else:
                spans.append([i, end])
    if not spans:
        return text
    out, pos = [], 0
    for start, end in spans:
        out.append(text[pos:start])
        out.append(REDACTED)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _scrub_shapes(text: str) -> str:
    for pattern in _shapes():
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact(text: object, *secrets: str | None) -> str:
    """``text`` without any secret: no run of 8+ characters of a known secret, no key-shaped token, no URL
    userinfo. Apply it to the WHOLE text before any truncation (see :func:`clip`)."""
    text = text if isinstance(text, str) else str(text)
    text = _scrub_fragments(text, known_secrets(*secrets))
    return _scrub_shapes(text)


def clip(text: object, limit: int, *secrets: str | None) -> str:
    """Redact the whole text, then cut it to ``limit`` characters (plus ``...``). The order is the point: a
    cut made first could leave part of a key that no longer matches it."""
    clean = redact(text, *secrets)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def mask_url(url: str | None) -> str | None:
    """A URL safe to print: userinfo (``user:pass@``) and key-like query values removed."""
    if url is None:
        return None
    scheme, sep, rest = url.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        if "@" in authority:  # the LAST @ ends the userinfo (a password may itself hold '@')
            rest = f"{REDACTED}@{authority.rpartition('@')[2]}{slash}{path}"
        url = f"{scheme}{sep}{rest}"
    return redact(url)


class RedactingFilter:
    """Rewrites each record's message (and exception text) through :func:`redact` before any handler sees it.

    Attached to loggers that may quote upstream bodies (LiteLLM logs whole error responses at DEBUG). Filters
    run only for records that pass the level check, so this costs nothing while those levels are off. A plain
    class with ``filter`` (all :mod:`logging` asks of a filter), so importing this module need not load
    :mod:`logging`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: keep its template only
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            import logging

            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(*names: str) -> None:
    """Attach the redacting filter to these loggers (idempotent). A logger's filters see only the records
    logged to it by name, so every logger that may carry upstream text is listed explicitly."""
    import logging

    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
