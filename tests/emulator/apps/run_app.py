"""Toy app for ``modal run``: the container prints a marker that must reach the CLI's output."""

import modal

app = modal.App("emu-run")


@app.function()
def shout(word: str) -> str:
    print(f"CONTAINER-SAYS {word.upper()}")
    return word.upper()


@app.local_entrypoint()
def main(word: str = "hello"):
    print("LOCAL-RESULT", shout.remote(word))
