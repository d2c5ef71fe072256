"""Imports a sibling package WITHOUT ``add_local_python_source``: the container cannot import it."""

import emu_helpers  # works locally (the app's directory is on sys.path), missing in the container
import modal

app = modal.App("emu-broken")


@app.function()
def uses_helper(text: str) -> str:
    return emu_helpers.shout(text)
