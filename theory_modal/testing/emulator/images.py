"""Images are recorded recipes: nothing is built, but ``ENV`` lines along the layer chain reach containers.

``Image.env({...})`` produces ``ENV KEY=<shlex-quoted value>`` lines; base images (e.g. ``uv_pip_install``) may
write ``ENV PATH=/x:$PATH``. We apply them in layer order with Dockerfile-like quoting and ``$VAR`` expansion
(no expansion inside single quotes), which is all the fidelity a test needs. Everything else (``RUN``, ``COPY``,
``WORKDIR``, pip installs, ``run_function`` build steps) is kept for inspection but not executed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from modal_proto import api_pb2

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expand(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """Expand the ``$NAME`` / ``${NAME}`` reference at ``text[i] == '$'``; return (value, next index)."""
    if text.startswith("${", i):
        end = text.find("}", i + 2)
        if end != -1:
            name = text[i + 2 : end].split(":-", 1)
            value = env.get(name[0], "")
            if not value and len(name) == 2:
                value = name[1]
            return value, end + 1
    match = _NAME.match(text, i + 1)
    if match is None:
        return "$", i + 1
    return env.get(match.group(0), ""), match.end()


def split_words(text: str, env: Mapping[str, str]) -> list[str]:
    """Split ``text`` into words like a Dockerfile instruction: quotes, backslash escapes, ``$VAR`` expansion."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote == "'":
            if ch == "'":
                quote = None
            else:
                current.append(ch)
        elif ch == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            in_word = True
            i += 1
        elif ch == "$":
            value, i = _expand(text, i, env)
            current.append(value)
            in_word = True
            continue
        elif quote == '"':
            if ch == '"':
                quote = None
            else:
                current.append(ch)
        elif ch in "'\"":
            quote = ch
            in_word = True
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(current))
    return words


def apply_env_instruction(arguments: str, env: dict[str, str]) -> None:
    """Apply the arguments of one ``ENV`` instruction to ``env`` (both ``K=V ...`` and legacy ``K V`` forms)."""
    words = split_words(arguments, env)
    if not words:
        return
    if "=" in words[0]:
        for word in words:
            key, _, value = word.partition("=")
            if key:
                env[key] = value
    else:
        env[words[0]] = " ".join(words[1:])


def image_env(image_id: str, images: Mapping[str, api_pb2.Image], base_env: Mapping[str, str]) -> dict[str, str]:
    """Environment after applying the ``ENV`` lines of ``image_id`` and its base layers on top of ``base_env``."""
    env = dict(base_env)

    def visit(current: str, seen: frozenset[str]) -> None:
        image = images.get(current)
        if image is None or current in seen:
            return
        for base in image.base_images:
            visit(base.image_id, seen | {current})
        for command in image.dockerfile_commands:
            keyword, _, arguments = command.strip().partition(" ")
            if keyword.upper() == "ENV":
                apply_env_instruction(arguments, env)

    visit(image_id, frozenset())
    return env
