"""Toy app for process-hygiene tests: reports container pids, and can leave a grandchild process behind."""

import os
import subprocess
import time

import modal

app = modal.App("emu-lifecycle")


@app.function()
def pid(delay: float = 0.0) -> int:
    time.sleep(delay)
    return os.getpid()


@app.function()
def spawn_grandchild() -> int:
    """Start a long sleep in the background (same process group) and return its pid."""
    return subprocess.Popen(["sleep", "300"]).pid
