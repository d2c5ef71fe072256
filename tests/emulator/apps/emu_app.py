"""Toy Modal app for the emulator tests, deployed as ``emu-test``: one function per behaviour under test."""

import os
import sys
import time
from pathlib import Path

import emu_helpers  # reaches containers through add_local_python_source below
import modal

app = modal.App("emu-test")
image = (
    modal.Image.debian_slim()
    .env({"EMU_IMAGE_VAR": "from-image", "EMU_QUOTED": "two words"})
    .add_local_python_source("emu_helpers")
)
secret = modal.Secret.from_name("emu-test-secret", required_keys=["EMU_SECRET_TOKEN"])


@app.function(image=image)
def echo(x):
    return x


@app.function(image=image)
def describe(x: str) -> dict:
    return {"pid": os.getpid(), "shouted": emu_helpers.shout(x), "cwd": os.getcwd()}


@app.function(image=image)
def square(x: int) -> int:
    return x * x


@app.function(image=image)
def add(a: int, b: int) -> int:
    return a + b


@app.function(image=image)
def square_plus_two(x: int) -> int:
    """Calls other functions from inside a container: a sibling (hydrated from the app layout) and a lookup."""
    return square.remote(x) + modal.Function.from_name("emu-test", "add").remote(1, 1)


@app.function(image=image)
@modal.batched(max_batch_size=8, wait_ms=300)
def batch_sizes(xs: list) -> list:
    return [len(xs)] * len(xs)


@app.function(image=image)
def countdown(n: int):
    yield from range(n, 0, -1)


@app.function(image=image)
@modal.concurrent(max_inputs=4)
def slow(delay: float) -> dict:
    start = time.time()
    time.sleep(delay)
    return {"pid": os.getpid(), "start": start, "end": time.time()}


@app.function(image=image, timeout=2)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


@app.function(image=image, retries=modal.Retries(max_retries=3, initial_delay=0.0, backoff_coefficient=1.0))
def flaky(counter_path: str, failures: int) -> int:
    """Fails the first ``failures`` attempts; returns the attempt number that succeeded."""
    counter = Path(counter_path)
    attempt = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempt))
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


@app.function(image=image, secrets=[secret])
def read_env(names: list) -> dict:
    return {name: os.environ.get(name) for name in names}


@app.function(image=image)
def fail(message: str):
    raise ValueError(message)


@app.function(image=image)
def crash():
    os._exit(13)


@app.function(image=image)
def exit_now():
    sys.exit(3)


@app.function(image=image)
def reverse(payload: bytes) -> bytes:
    return payload[::-1]


@app.cls(image=image)
class Greeter:
    name: str = modal.parameter(default="world")

    @modal.enter()
    def setup(self):
        self.greeting = "hello"

    @modal.method()
    def greet(self, punctuation: str = "!") -> str:
        return f"{self.greeting} {self.name}{punctuation}"

    @modal.method()
    def pid(self) -> int:
        return os.getpid()

    @modal.method()
    def letters(self):
        yield from self.name


@app.cls(image=image, enable_memory_snapshot=True)
class Snappy:
    @modal.enter(snap=True)
    def load(self):
        self.loaded = "loaded before snapshot"

    @modal.enter(snap=False)
    def warm(self):
        self.warmed = "warmed after restore"

    @modal.method()
    def state(self) -> list:
        return [self.loaded, self.warmed]
