"""The remote path speaks the documented wire format, and behaves for callers that go away or lack this package:
schema-valid run/stream/map through the emulator, live by default, errors readable with only `modal`, one
client per adapter, clean stderr, and cancel/close that stop exactly the one input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import modal
import pytest
from e2e_settings import ROOT

from theory_modal.adapters import ModalAdapter
from theory_modal.wire_schema import validate

pytestmark = pytest.mark.slow


def _caller_env(emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_") and not k.endswith("_API_KEY")}
    env.update(emulator.client_env())
    return env


@pytest.mark.parametrize("ref", ["llm/mock@1", "llm/litellm@1"])
def test_remote_run_stream_and_map_validate_against_the_schema(modal_client, ref):
    adapter = ModalAdapter()
    payload = {"prompt": "wire check", "mode": "smoke"}
    resp = adapter.run(ref, payload)
    validate("Response", resp)
    assert resp["mode"] == "smoke"
    stream = adapter.stream(ref, payload)
    assert "".join(stream) == stream.response["text"]
    validate("Response", stream.response)
    assert stream.function_call_id and stream.function_call_id.startswith("fc-")
    items = list(adapter.map(ref, [payload, {"prompt": ""}, {**payload, "options": {"mock_error": "timeout"}}]))
    for item in items:
        validate("MapItem", item)
    assert [("error" in i) for i in items] == [False, True, True]  # litellm refuses the mock-only option
    assert all(i["mode"] == m for i, m in zip(items, ["smoke", "live", "smoke"]))

    name = "mock_stream" if ref == "llm/mock@1" else "litellm_stream"
    events = list(modal.Function.from_name("theory", name).remote_gen(payload))
    for event in events:
        validate("StreamEvent", event)
    assert [events[0]["type"], events[-1]["type"]] == ["start", "done"]
    adapter.close()


def test_a_plain_remote_call_without_mode_is_live(modal_client, e2e_fake_llm):
    e2e_fake_llm.reset()
    resp = modal.Function.from_name("theory", "litellm_chat").remote({"prompt": "live by default",
                                                                       "model": "openai/gpt-4o-mini"})
    validate("Response", resp)
    assert resp["mode"] == "live" and resp["text"] == "echo: live by default"
    assert e2e_fake_llm.hits("/v1/chat/completions") == 1  # it really went upstream


_NO_PACKAGE_CALLER = textwrap.dedent(
    """
    import importlib.abc, importlib.util, json, sys
    sys.path[:] = [p for p in sys.path if p and (not p.startswith({root!r}) or "site-packages" in p)]

    class Block(importlib.abc.MetaPathFinder):  # and no editable-install finder may bring them back
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("providers", "theory_modal"):
                raise ModuleNotFoundError(f"No module named {{name!r}}")

    sys.meta_path.insert(0, Block())
    import modal
    assert importlib.util.find_spec("modal") is not None
    for name in ("providers", "theory_modal"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"{{name}} is importable: the test proves nothing")
    out = {{}}
    try:
        modal.Function.from_name("theory", "mock_chat").remote({{"prompt": "x", "options": {{"mock_error": "rate_limited"}}}})
    except Exception as exc:
        out = {{"type": type(exc).__module__ + "." + type(exc).__name__, "message": str(exc),
               "error": getattr(exc, "error", None), "kind": getattr(exc, "kind", None)}}
    try:
        list(modal.Function.from_name("theory", "litellm_stream").remote_gen({{"prompt": "x", "model": "nope"}}))
    except Exception as exc:
        out["stream"] = {{"type": type(exc).__name__, "message": str(exc), "kind": getattr(exc, "kind", None)}}
    print(json.dumps(out))
    """
)


def test_a_caller_with_only_modal_installed_reads_the_message_and_kind(modal_client, emulator, tmp_path):
    code = _NO_PACKAGE_CALLER.format(root=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_caller_env(emulator),
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["type"] == "builtins.RuntimeError"
    assert got["message"] == "Mock rate limit (scripted failure)."  # the original one line, nothing else
    assert got["kind"] == "rate_limited" and got["error"]["retryable"] is True
    validate("Error", got["error"])
    assert got["stream"]["type"] == "RuntimeError" and got["stream"]["kind"] == "invalid_request"
    assert "model" in got["stream"]["message"]
    assert "Could not deserialize" not in r.stdout + r.stderr


_CLEAN_CALLER = textwrap.dedent(
    """
    from theory_modal.adapters import ModalAdapter
    with ModalAdapter() as a:
        items = list(a.map("llm/mock@1", [{"prompt": f"p{i}"} for i in range(40)]))
        assert [i["index"] for i in items] == list(range(40)) and not any("error" in i for i in items)
        items = list(a.map("llm/litellm@1", [{"prompt": f"q{i}", "mode": "smoke"} for i in range(8)]))
        assert not any("error" in i for i in items)
        s = a.stream("llm/litellm@1", {"prompt": "stream it", "mode": "smoke"})
        assert "".join(s) == s.response["text"]
        assert a.run("llm/mock@1", {"prompt": "one"})["text"] == "mock reply to: one"
    print("OK")
    """
)


def test_successful_map_and_stream_work_leaves_stderr_empty(modal_client, emulator, tmp_path):
    r = subprocess.run([sys.executable, "-c", _CLEAN_CALLER], capture_output=True, text=True,
                       env=_caller_env(emulator), cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"
    for marker in ("Traceback", "Task was destroyed", "aclose()", "Warning", "Error"):
        assert marker not in r.stderr, r.stderr
    assert r.stderr.strip() == ""


def test_32_concurrent_first_calls_create_one_client(modal_client, monkeypatch):
    created = []
    real = modal.Client.from_credentials

    def counting(*args, **kwargs):
        created.append(1)
        time.sleep(0.05)  # widen the race window
        return real(*args, **kwargs)

    monkeypatch.setattr(modal.Client, "from_credentials", counting)
    adapter = ModalAdapter()
    barrier = threading.Barrier(32)
    results, errors = [], []

    def call(i: int) -> None:
        barrier.wait()
        try:
            results.append(adapter.run("llm/mock@1", {"prompt": f"c{i}"})["text"])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    adapter.close()
    assert errors == [] and sorted(results) == sorted(f"mock reply to: c{i}" for i in range(32))
    assert len(created) == 1


def _wait(predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _prompts(server) -> list[str]:
    out = []
    for r in server.requests:
        if r["path"].endswith("/chat/completions") and isinstance(r["body"], dict):
            out.append(r["body"]["messages"][-1]["content"])
    return out


def test_cancelling_one_in_flight_input_leaves_the_others_untouched(modal_client, e2e_fake_llm):
    """Four inputs in flight in one container; one is cancelled. The other three finish, and every input
    reached the upstream exactly once (a signalled container would have rescheduled them: twice)."""
    e2e_fake_llm.reset()
    fn = modal.Function.from_name("theory", "litellm_chat")
    prompts = [f"in flight {i}" for i in range(4)]
    calls = [fn.spawn({"prompt": p, "model": "openai/hang-4"}) for p in prompts]
    assert _wait(lambda: sorted(_prompts(e2e_fake_llm)) == sorted(prompts), 60), _prompts(e2e_fake_llm)
    calls[0].cancel()
    with pytest.raises(Exception):
        calls[0].get(timeout=30)
    for call, prompt in zip(calls[1:], prompts[1:]):
        resp = call.get(timeout=60)
        assert resp["text"] == f"echo: {prompt}" and resp["mode"] == "live"
    time.sleep(2)  # a rescheduled input would reach the upstream again by now
    seen = _prompts(e2e_fake_llm)
    assert {p: seen.count(p) for p in prompts} == {p: 1 for p in prompts}


def test_closing_a_remote_stream_stops_the_container_reading_upstream(modal_client, e2e_fake_llm):
    """The caller reads three chunks of an endless upstream stream and closes: the adapter cancels the remote
    call, the container's input is cancelled as one asyncio task, and the upstream sees its client go away
    within a couple of seconds (Modal alone would keep the generator running for nobody)."""
    e2e_fake_llm.reset()
    scenario = "endless-0.05"  # a content event every 50 ms, forever
    stream = ModalAdapter().stream("llm/litellm@1", {"prompt": "close me", "mode": "live",
                                                      "model": f"openai/{scenario}"})
    got = [next(stream) for _ in range(3)]
    assert got and stream.function_call_id
    closed_at = time.monotonic()
    stream.close()
    assert e2e_fake_llm.wait_for_disconnects(1, 15, scenario=scenario), "the container kept reading upstream"
    gone = [d for d in e2e_fake_llm.disconnects if d["scenario"] == scenario][0]
    assert gone["at"] - closed_at < 5.0


def test_cli_modal_adapter_defaults_to_live_and_local_to_smoke(emulator, deployed, tmp_path):
    for adapter, mode in (("modal", "live"), ("local", "smoke")):
        r = subprocess.run([sys.executable, "-m", "theory_modal", "run", "--ref", "llm/mock@1", "--adapter", adapter,
                            "--prompt", "which mode", "--json"], capture_output=True, text=True,
                           env=_caller_env(emulator), timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        resp = json.loads(r.stdout)
        validate("Response", resp)
        assert resp["mode"] == mode
