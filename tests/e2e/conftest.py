"""End-to-end fixtures: our deploy.py deployed to the loopback Modal emulator, with a fake LLM server behind it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_settings import OTLP_KEY, ROOT, SECRET_NAME, SENTINEL

from theory_modal.testing.emulator import ModalEmulator
from theory_modal.testing.emulator.fixtures import reset_modal_client
from theory_modal.testing.fake_llm import FakeLLMServer
from theory_modal.testing.otlp_receiver import OtlpReceiver



@pytest.fixture(scope="session")
def e2e_fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def container_spans(tmp_path_factory):
    """The file where every container writes its spans as JSON lines (THEORY_MODAL_OTEL_FILE)."""
    return tmp_path_factory.mktemp("container-otel") / "spans.jsonl"


@pytest.fixture(scope="session")
def otlp_collector() -> Iterator[OtlpReceiver]:
    """A loopback OTLP/HTTP collector every container exports to (OTEL_EXPORTER_OTLP_* from the secret)."""
    with OtlpReceiver() as collector:
        yield collector


@pytest.fixture(scope="session")
def emulator(e2e_fake_llm, container_spans, otlp_collector, tmp_path_factory) -> Iterator[ModalEmulator]:
    secrets = {SECRET_NAME: {"OPENAI_API_KEY": SENTINEL, "OPENAI_API_BASE": e2e_fake_llm.openai_base,
                             "THEORY_MODAL_OTEL_FILE": str(container_spans),
                             "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_collector.endpoint,
                             "OTEL_EXPORTER_OTLP_HEADERS": f"x-collector-key={OTLP_KEY}"}}
    emu = ModalEmulator(secrets=secrets, state_dir=tmp_path_factory.mktemp("e2e-emulator"))
    emu.start()
    try:
        yield emu
    finally:
        reset_modal_client()
        pids = emu.container_pids()
        emu.stop()
        alive = [pid for pid in pids if _alive(pid)]
        assert pids, "the end-to-end tests should have started containers"
        assert alive == [], f"container processes left running after stop(): {alive}"


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session")
def deployed(emulator) -> dict:
    """`modal deploy deploy.py` (the real CLI) with the OpenAI secret attached by name."""
    result = emulator.deploy(ROOT / "deploy.py", env={"THEORY_MODAL_SECRETS": SECRET_NAME})
    return {"stdout": result.stdout, "stderr": result.stderr}


@pytest.fixture
def modal_client(emulator, deployed, monkeypatch) -> Iterator[dict]:
    """This process's modal client pointed at the emulator, with the app deployed."""
    import os

    for key in list(os.environ):
        if key.startswith("MODAL_") or key.endswith("_API_KEY"):
            monkeypatch.delenv(key)
    env = emulator.client_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_modal_client()
    yield env
    reset_modal_client()
    assert emulator.unimplemented_calls == [], "the client called RPCs the emulator does not implement"
