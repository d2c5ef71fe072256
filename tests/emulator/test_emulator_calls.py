"""Calling a deployed app through the real modal client, with real container processes behind the emulator."""

from __future__ import annotations

import asyncio
import os

import modal
import modal.exception
import pytest
from emulator_helpers import SECRET_VALUE, within

from theory_modal.testing.emulator import ModalEmulator

pytestmark = pytest.mark.usefixtures("modal_env")

APP = "emu-test"


def fn(name: str) -> modal.Function:
    return modal.Function.from_name(APP, name)


def test_deploy_registers_all_functions_and_classes(emu_app: str, modal_emulator: ModalEmulator) -> None:
    for name in ("echo", "square", "countdown", "slow", "sleepy", "flaky", "read_env", "crash", "reverse"):
        within(10, fn(name).hydrate)
    within(10, modal.Cls.from_name(APP, "Greeter").hydrate)
    assert modal_emulator.rpc_counts()["FunctionCreate"] >= 15


def test_recorded_definitions_and_image_recipes(emu_app: str, modal_emulator: ModalEmulator) -> None:
    sleepy = modal_emulator.deployed_function(APP, "sleepy")
    assert sleepy.timeout_secs == 2
    assert modal_emulator.deployed_function(APP, "flaky").retry_policy.retries == 3
    assert modal_emulator.deployed_function(APP, "slow").max_concurrent_inputs == 4
    assert modal_emulator.deployed_function(APP, "Snappy.*").checkpointing_enabled
    commands = modal_emulator.image_commands(sleepy.image_id)
    assert "ENV EMU_QUOTED='two words'" in commands
    assert any(command.startswith("FROM python:") for command in commands)
    with pytest.raises(KeyError):
        modal_emulator.deployed_function(APP, "nope")


def test_remote_round_trips_values(emu_app: str) -> None:
    assert within(30, fn("echo").remote, {"a": [1, 2.5, None], "b": b"bytes"}) == {"a": [1, 2.5, None], "b": b"bytes"}
    assert within(30, fn("add").remote, 2, b=3) == 5


def test_local_python_source_and_workdir_reach_the_container(emu_app: str) -> None:
    result = within(30, fn("describe").remote, "hi")
    assert result["shouted"] == "HI!"
    assert result["pid"] != os.getpid()
    assert result["cwd"].endswith(os.path.join("fs", "root"))


def test_remote_gen_streams_items(emu_app: str) -> None:
    assert within(30, lambda: list(fn("countdown").remote_gen(4))) == [4, 3, 2, 1]
    assert within(30, lambda: list(fn("countdown").remote_gen(0))) == []


def test_spawn_and_function_call_get(emu_app: str) -> None:
    call = within(30, fn("square").spawn, 7)
    assert call.get(timeout=30) == 49
    assert modal.FunctionCall.from_id(call.object_id).get(timeout=30) == 49


def test_map_returns_every_output_in_order(emu_app: str) -> None:
    n = 40
    assert within(60, lambda: list(fn("square").map(range(n)))) == [i * i for i in range(n)]


def test_starmap_and_map_with_exceptions(emu_app: str) -> None:
    assert within(30, lambda: list(fn("add").starmap([(1, 2), (3, 4), (5, 6)]))) == [3, 7, 11]
    results = within(30, lambda: list(fn("fail").map(["x", "y"], return_exceptions=True)))
    assert [type(r) for r in results] == [ValueError, ValueError]
    assert "x" in str(results[0])


def test_aio_variants(emu_app: str) -> None:
    async def main() -> tuple:
        echo, square, countdown = fn("echo"), fn("square"), fn("countdown")
        value = await echo.remote.aio("async")
        items = [x async for x in countdown.remote_gen.aio(3)]
        mapped = [x async for x in square.map.aio([1, 2, 3])]
        starmapped = [x async for x in fn("add").starmap.aio([(1, 1), (2, 2)])]
        call = await square.spawn.aio(9)
        spawned = await call.get.aio(timeout=30)
        gathered = await modal.FunctionCall.gather.aio(await square.spawn.aio(2), await square.spawn.aio(3))
        return value, items, mapped, starmapped, spawned, list(gathered)

    result = asyncio.run(asyncio.wait_for(main(), 60))
    assert result == ("async", [3, 2, 1], [1, 4, 9], [2, 4], 81, [4, 9])


def test_functions_can_call_functions_from_inside_a_container(emu_app: str) -> None:
    assert within(30, fn("square_plus_two").remote, 5) == 27


def test_batched_function_receives_batches(emu_app: str) -> None:
    sizes = within(30, lambda: list(fn("batch_sizes").map(range(6))))
    assert len(sizes) == 6 and max(sizes) > 1, sizes


def test_with_options_overrides_the_deployed_timeout(emu_app: str) -> None:
    assert within(30, fn("sleepy").with_options(timeout=10).remote, 2.5) == "woke up"  # deployed timeout is 2s


def test_cancelled_call_does_not_hang(emu_app: str) -> None:
    call = within(30, fn("slow").spawn, 60)
    call.cancel(terminate_containers=True)
    with pytest.raises(modal.exception.Error):
        call.get(timeout=10)


def test_cls_parameters_enter_and_methods(emu_app: str) -> None:
    greeter_cls = modal.Cls.from_name(APP, "Greeter")
    assert within(30, greeter_cls().greet.remote) == "hello world!"
    bob = greeter_cls(name="bob")
    assert within(30, bob.greet.remote, "?") == "hello bob?"
    assert within(30, lambda: list(bob.letters.remote_gen())) == ["b", "o", "b"]
    # Each set of parameters is a separate bound function with its own container; the same one is reused.
    assert within(30, bob.pid.remote) == within(30, greeter_cls(name="bob").pid.remote)
    assert within(30, bob.pid.remote) != within(30, greeter_cls().pid.remote)


def test_memory_snapshot_class_runs_both_enter_hooks(emu_app: str) -> None:
    assert within(30, modal.Cls.from_name(APP, "Snappy")().state.remote) == [
        "loaded before snapshot",
        "warmed after restore",
    ]


def test_concurrent_inputs_overlap_on_one_container(emu_app: str) -> None:
    calls = [within(30, fn("slow").spawn, 1.5) for _ in range(2)]
    first, second = (call.get(timeout=30) for call in calls)
    assert first["pid"] == second["pid"]
    assert first["start"] < second["end"] and second["start"] < first["end"], "the inputs did not overlap"


def test_timeout_raises_function_timeout_error_and_recovers(emu_app: str) -> None:
    with pytest.raises(modal.exception.FunctionTimeoutError):
        within(30, fn("sleepy").remote, 30)
    assert within(30, fn("sleepy").remote, 0) == "woke up"  # a fresh container replaces the killed one


def test_sync_call_is_retried_until_it_succeeds(emu_app: str, modal_emulator: ModalEmulator, tmp_path) -> None:
    retries_before = modal_emulator.rpc_counts().get("FunctionRetryInputs", 0)
    assert within(60, fn("flaky").remote, str(tmp_path / "count"), 2) == 3
    # synchronous calls are retried by the client, as against Modal
    assert modal_emulator.rpc_counts()["FunctionRetryInputs"] == retries_before + 2


def test_map_inputs_are_retried(emu_app: str, tmp_path) -> None:
    args = [(str(tmp_path / f"count{i}"), i % 2) for i in range(4)]
    assert within(60, lambda: list(fn("flaky").starmap(args))) == [1, 2, 1, 2]


def test_spawned_call_is_retried_by_the_server(emu_app: str, modal_emulator: ModalEmulator, tmp_path) -> None:
    retries_before = modal_emulator.rpc_counts().get("FunctionRetryInputs", 0)
    assert within(30, fn("flaky").spawn, str(tmp_path / "count"), 1).get(timeout=60) == 2
    assert modal_emulator.rpc_counts().get("FunctionRetryInputs", 0) == retries_before


def test_retries_give_up_with_the_last_error(emu_app: str, tmp_path) -> None:
    counter = tmp_path / "count"
    with pytest.raises(RuntimeError, match="attempt 4 fails on purpose"):
        within(60, fn("flaky").remote, str(counter), 99)
    assert counter.read_text() == "4"  # one attempt plus max_retries=3


def test_secrets_reach_containers_but_host_environment_does_not(emu_app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMU_SECRET_TOKEN", "host-value-must-not-win")
    monkeypatch.setenv("EMU_HOST_ONLY_API_KEY", "host-secret-must-not-leak")
    names = ["EMU_SECRET_TOKEN", "EMU_SECOND_KEY", "EMU_HOST_ONLY_API_KEY", "EMU_IMAGE_VAR", "EMU_QUOTED"]
    env = within(30, fn("read_env").remote, [*names, "HOME", "MODAL_TOKEN_SECRET"])
    assert env["EMU_SECRET_TOKEN"] == SECRET_VALUE
    assert env["EMU_SECOND_KEY"] == "second"
    assert env["EMU_HOST_ONLY_API_KEY"] is None
    assert env["EMU_IMAGE_VAR"] == "from-image"
    assert env["EMU_QUOTED"] == "two words"
    assert env["MODAL_TOKEN_SECRET"] is None
    assert env["HOME"] != os.environ.get("HOME")


def test_user_exception_keeps_its_type(emu_app: str) -> None:
    with pytest.raises(ValueError, match="boom"):
        within(30, fn("fail").remote, "boom")


def test_container_crash_is_reported_not_hung(emu_app: str) -> None:
    with pytest.raises(modal.exception.RemoteError, match="exited with code 13"):
        within(30, fn("crash").remote)
    assert within(30, fn("echo").remote, "still fine") == "still fine"


def test_sys_exit_in_function_is_reported(emu_app: str) -> None:
    with pytest.raises(SystemExit):
        within(30, fn("exit_now").remote)


def test_payloads_over_the_inline_limit_use_blobs(emu_app: str, modal_emulator: ModalEmulator) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    assert within(60, fn("reverse").remote, payload) == payload[::-1]
    small_but_async = b"x" * 20_000 + b"y"  # .spawn offloads arguments over 8 KiB
    assert within(30, fn("reverse").spawn, small_but_async).get(timeout=30) == small_but_async[::-1]
    assert modal_emulator.rpc_counts()["BlobCreate"] >= 3


def test_lookup_of_undeployed_things_raises_not_found(emu_app: str) -> None:
    with pytest.raises(modal.exception.NotFoundError):
        within(30, modal.Function.from_name("no-such-app", "f").hydrate)
    with pytest.raises(modal.exception.NotFoundError):
        within(30, fn("no_such_function").hydrate)
    with pytest.raises(modal.exception.NotFoundError, match=r"modal\.Cls"):
        within(30, fn("Greeter").hydrate)
    with pytest.raises(modal.exception.NotFoundError):
        within(30, modal.Cls.from_name(APP, "NoSuchClass").hydrate)


@pytest.mark.parametrize("token_id,token_secret", [("ak-bad", "as-emulator"), ("ak-emulator", "wrong-secret")])
def test_bad_token_raises_auth_error(
    emu_app: str, monkeypatch: pytest.MonkeyPatch, token_id: str, token_secret: str
) -> None:
    from theory_modal.testing.emulator.fixtures import reset_modal_client

    monkeypatch.setenv("MODAL_TOKEN_ID", token_id)
    monkeypatch.setenv("MODAL_TOKEN_SECRET", token_secret)
    reset_modal_client()
    with pytest.raises(modal.exception.AuthError):
        within(30, fn("echo").hydrate)
