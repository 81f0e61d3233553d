"""Generators for the process-worker tests (importable by name in a spawned child)."""

from __future__ import annotations

import os


def count_job(*, stop, n: int):
    for index in range(n):
        yield {"index": index, "pid": os.getpid()}


def failing_job(*, stop):
    from dpsad_core.errors import DataImportError

    yield "first"
    raise DataImportError("unreadable image", path="/data/x.png", remedy="remove it or pass --skip-corrupt")


def until_stopped_job(*, stop):
    import time

    count = 0
    while not stop():
        count += 1
        yield count
        time.sleep(0.05)
    yield "stopped cleanly"
