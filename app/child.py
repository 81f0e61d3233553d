"""Code that runs in the workbench's child processes (no Qt here).

Why processes: the core's long work imports torch and runs Python between tensor operations; in a
thread of the GUI process it holds the GIL long enough to freeze the window for hundreds of
milliseconds (bench/gui_latency.py measured gaps of 200-800 ms). In a child process it cannot.

Targets are named as ``"module:function"`` strings so nothing but plain data crosses the pipe.
"""

from __future__ import annotations

import importlib
import os
import pickle
import threading
import time
from typing import Any

# Environment the core reads (workspace, keys, debugging, thread counts), copied into each call so a
# long-lived child follows the parent when a test or the user changes it.
FORWARDED_ENV = ("DPSAD_WORKSPACE", "DPSAD_CONFIG_DIR", "DPSAD_CACHE_DIR", "DPSAD_DEBUG", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS")


def forwarded_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in FORWARDED_ENV}


def resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _apply_env(env: dict[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _limit_threads(threads: int | None) -> None:
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(max(1, threads))


# The children yield the CPU to the window: on a machine with few cores, a training process at the
# same priority delays the event loop by a scheduler time slice or more whenever both want a core.
CHILD_NICENESS = 10


def _lower_priority() -> None:
    try:
        os.nice(CHILD_NICENESS)
    except (AttributeError, OSError):  # not on this platform, or not allowed: run at normal priority
        pass


def _watch_parent(stop_event) -> None:
    """Stop the work (with a checkpoint) if the GUI process disappears, instead of training on unseen."""
    parent = os.getppid()

    def watch() -> None:
        while not stop_event.is_set():
            if os.getppid() != parent:
                stop_event.set()
                return
            time.sleep(1.0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def safe_exception(error: BaseException) -> BaseException:
    """``error`` if it survives pickling, else a RuntimeError that keeps its type name and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure gets the same fallback
        return RuntimeError(f"{type(error).__name__}: {error}")


def run_generator(target: str, kwargs: dict[str, Any], env: dict[str, str | None], torch_threads: int | None,
                  queue, stop_event) -> None:
    """Child entry point: iterate ``target(stop=..., **kwargs)`` and send each event to ``queue``.

    Messages: ``("yielded", event)`` ..., then ``("errored", exception)`` if it failed, then
    ``("done", None)``.
    """
    _apply_env(env)
    _lower_priority()
    _watch_parent(stop_event)
    try:
        _limit_threads(torch_threads)
        for event in resolve(target)(stop=stop_event.is_set, **kwargs):
            queue.put(("yielded", event))
    except BaseException as error:  # noqa: BLE001 - every failure is reported to the parent
        queue.put(("errored", safe_exception(error)))
    finally:
        queue.put(("done", None))


def call(target: str, args: tuple, kwargs: dict[str, Any], env: dict[str, str | None]) -> Any:
    """Child entry point for one-shot calls (plan previews, imports, verification)."""
    _apply_env(env)
    try:
        return resolve(target)(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - re-raised in the parent by concurrent.futures
        raise safe_exception(error) from None


def init_pool_child(torch_threads: int) -> None:
    """Initialiser of the helper process: cap torch's threads once, if torch gets imported at all."""
    os.environ.setdefault("OMP_NUM_THREADS", str(torch_threads))
    _lower_priority()
