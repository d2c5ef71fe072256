"""A deployed function that always outlives its Modal timeout (the security suite's timeout test)."""

import time

import modal

app = modal.App("sec-timeout")


@app.function(timeout=2)
def sleepy(payload: dict) -> dict:
    time.sleep(30)
    return payload
