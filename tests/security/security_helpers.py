"""Shared pieces of the security suite (a unique module name: conftest modules shadow each other).

The invariant every leak test checks: no run of 8 or more characters of a secret appears in any output.
"""

from __future__ import annotations

import socket
import string
import threading
from dataclasses import dataclass, field

from hypothesis import strategies as st

FRAGMENT = 8

#: Characters real keys are made of (OpenAI, Anthropic, AWS secret keys, JWTs, URL-safe tokens).
KEY_ALPHABET = string.ascii_letters + string.digits + "-_.~+/="


def key_fragments(key: str, n: int = FRAGMENT) -> set[str]:
    return {key[i : i + n] for i in range(len(key) - n + 1)}


def leaked(key: str, *texts: str) -> list[str]:
    """Every 8+ character run of ``key`` found in ``texts`` (empty when nothing leaked)."""
    grams = key_fragments(key)
    return sorted({g for text in texts for g in grams if g in text})


@st.composite
def secret_keys(draw) -> str:
    """Random keys: a vendor-like prefix or none, then 4..16 chunks of four characters, each chunk an
    uppercase letter, a lowercase letter, a digit and any key character in random order. Every 8-character
    window of the body then mixes cases and digits, so finding one in an output means the key leaked, never
    that an ordinary word ("provider") happened to be part of a key."""
    prefix = draw(st.sampled_from(["", "sk-", "sk-proj-", "sk-ant-api03-", "gsk_", "hf_", "key-"]))
    chunks = draw(st.lists(
        st.tuples(st.sampled_from(string.ascii_uppercase), st.sampled_from(string.ascii_lowercase),
                  st.sampled_from(string.digits), st.sampled_from(KEY_ALPHABET)).flatmap(st.permutations),
        min_size=4, max_size=16))
    return prefix + "".join("".join(c) for c in chunks)


@dataclass
class Canary:
    """A loopback TCP server that only counts the connections it accepts: nothing may ever dial it."""

    port: int = 0
    accepted: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="security-canary", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(addr)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
