"""Run a generator of core events in a background thread and relay what it yields as Qt signals.

This is superqt's ``GeneratorWorker`` pattern: the core's long work (training, import, planning,
export) is a plain generator; the worker iterates it in a ``QThread`` and emits

``started`` -> ``yielded(event)`` ... -> ``errored(exception)`` or ``aborted`` (stop was asked) -> ``finished``.

``finished`` always comes last, exactly once. Signals are emitted from the worker thread and
delivered to receivers in the GUI thread through queued connections, so slots never run on the
worker thread and the event loop never waits for the core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QThread, Signal

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as ProcessEvent

# A factory receives the stop callable and returns the generator to run.
GeneratorFactory = Callable[[Callable[[], bool]], Iterator[Any]]


def limit_torch_threads(threads: int) -> None:
    """Cap torch's intra-op threads (called inside the worker, where torch is first imported).

    The GUI thread also needs a core; torch's default (every core) makes the two fight and the
    event loop stutter.
    """
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(max(1, threads))


class GeneratorWorker(QThread):
    """Iterates ``factory(stop)`` in a thread; see the module docstring for the signal order.

    Parameters
    ----------
    factory
        Called in the worker thread with a ``stop`` callable (True once :meth:`request_stop` was
        called) and returns the generator to iterate. Building the generator inside the thread keeps
        its imports (torch) and its set-up work off the GUI thread.
    torch_threads
        If set, torch's thread count is capped before the factory is called.
    """

    started_work = Signal()
    yielded = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished_work = Signal()

    def __init__(self, factory: GeneratorFactory, *, torch_threads: int | None = None, parent=None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._torch_threads = torch_threads
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def request_stop(self) -> None:
        """Ask the generator to stop at its next step boundary (the engine checkpoints first)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:  # runs in the worker thread
        self.started_work.emit()
        try:
            if self._torch_threads is not None:
                limit_torch_threads(self._torch_threads)
            generator = self._factory(self._stop.is_set)
            for event in generator:
                self.yielded.emit(event)
        except BaseException as error:  # noqa: BLE001 - every failure must reach the GUI as a signal
            self.error = error
            self.errored.emit(error)
        else:
            if self._stop.is_set():
                self.aborted.emit()
        finally:
            self.finished_work.emit()


class ProcessGeneratorWorker(GeneratorWorker):
    """Like :class:`GeneratorWorker`, but the generator runs in a child process.

    The thread only waits on a queue (which releases the GIL) and relays what arrives, so the core's
    work never competes with the event loop for the GIL. ``target`` is ``"module:function"``; the
    function is called as ``function(stop=..., **kwargs)`` and must return a generator of picklable
    events. A child that dies without a word (killed, out of memory) becomes a RunError.
    """

    # What a child that died without a word was doing, and what the user can do about it.
    DEFAULT_LOST = ("the training process", "the last checkpoint is kept: resume the run from the Runs screen")

    def __init__(self, target: str, kwargs: dict[str, Any], *, torch_threads: int | None = None,
                 parent=None, lost: tuple[str, str] = DEFAULT_LOST) -> None:
        super().__init__(lambda stop: iter(()), torch_threads=torch_threads, parent=parent)
        self._target = target
        self._kwargs = kwargs
        self._lost = lost
        self._process_stop: ProcessEvent | None = None

    def request_stop(self) -> None:
        super().request_stop()
        if self._process_stop is not None:
            self._process_stop.set()

    def run(self) -> None:  # runs in the worker thread
        import multiprocessing
        import queue as queue_module

        from dpsad_workbench.child import forwarded_env, run_generator

        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        self._process_stop = context.Event()
        if self._stop.is_set():
            self._process_stop.set()
        process = context.Process(target=run_generator, name="dpsad-workbench-job",
                                  args=(self._target, self._kwargs, forwarded_env(), self._torch_threads, events,
                                        self._process_stop), daemon=True)
        self.started_work.emit()
        started = False
        try:
            process.start()
            started = True
            _LIVE_PROCESSES.add(process)
            while True:
                try:
                    kind, payload = events.get(timeout=0.5)
                except queue_module.Empty:
                    if not process.is_alive():
                        from dpsad_core.errors import RunError

                        what, remedy = self._lost
                        raise RunError(f"{what} ended unexpectedly (exit code {process.exitcode})",
                                       remedy=remedy) from None
                    continue
                if kind == "yielded":
                    self.yielded.emit(payload)
                elif kind == "errored":
                    raise payload
                else:
                    break
        except BaseException as error:  # noqa: BLE001 - every failure must reach the GUI as a signal
            self.error = error
            self.errored.emit(error)
        else:
            if self._stop.is_set():
                self.aborted.emit()
        finally:
            if started:
                process.join(timeout=60)
                if process.is_alive():  # it said "done": it is only flushing; never leave it behind
                    process.terminate()
                    process.join(timeout=10)
                _LIVE_PROCESSES.discard(process)
            events.close()
            events.join_thread()
            self._process_stop = None  # release the semaphore now, not at interpreter exit
            self.finished_work.emit()


#: Helper processes for one-shot calls, by lane. A DP step timing (tens of seconds, minutes under load)
#: has a lane of its own so that an import or a plan preview never queues behind it.
INTERACTIVE_LANE = "interactive"
TIMING_LANE = "timing"
_POOLS: dict[str, Any] = {}
_DETACHED: set = set()
_LIVE_PROCESSES: set = set()  # the job processes of running ProcessGeneratorWorkers
END_GRACE_S = 20.0  # how long a job process may take to stop by itself (a checkpoint) when the app ends


def detach(worker: GeneratorWorker) -> None:
    """Keep a running worker alive after the widget that owns it goes away (closing never waits).

    A QThread destroyed while running aborts the process, so the worker loses its parent and is held
    here until it finishes. Its signals are disconnected first: the widgets they fed may be deleted.
    """
    if worker.isRunning():
        import warnings

        from PySide6.QtCore import Qt

        for signal in (worker.yielded, worker.errored, worker.aborted, worker.finished_work):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "nothing to disconnect" is fine
                try:
                    signal.disconnect()
                except (RuntimeError, TypeError):
                    pass
        worker.setParent(None)
        _DETACHED.add(worker)
        worker.finished.connect(lambda: _DETACHED.discard(worker), Qt.ConnectionType.QueuedConnection)


def wait_detached() -> None:
    """Block until every detached worker has finished (tests, and the end of the app)."""
    for worker in list(_DETACHED):
        worker.wait()
    _DETACHED.clear()


def helper_pool(lane: str = INTERACTIVE_LANE):
    """The lane's long-lived helper process for one-shot calls: it pays torch's import once, not per call."""
    pool = _POOLS.get(lane)
    if pool is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from dpsad_workbench.child import init_pool_child

        pool = _POOLS[lane] = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=init_pool_child, initargs=(default_torch_threads(),))
    return pool


def shutdown_helper_pool() -> None:
    wait_detached()
    while _POOLS:
        _POOLS.popitem()[1].shutdown(wait=True, cancel_futures=True)


def end_children(grace_s: float = END_GRACE_S) -> None:
    """End every child process of the app (called on aboutToQuit, whatever made the app quit).

    Job processes (training, export, evaluation) were asked to stop at a step boundary; each gets
    ``grace_s`` to do so, then is terminated. The helper process is terminated without waiting for
    its call (a plan preview or an import: nothing to keep). Nothing is left running after the app.
    """
    import time

    deadline = time.monotonic() + grace_s
    for process in list(_LIVE_PROCESSES):
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    while _POOLS:
        pool = _POOLS.popitem()[1]
        # ProcessPoolExecutor has no public way to end a busy worker: terminate its processes.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
    for worker in list(_DETACHED):  # their processes are gone: the threads end at once
        worker.wait(5_000)
    _DETACHED.clear()


class WorkerOwner:
    """Mixin for a screen's one-shot workers (set ``self._workers = set()`` in ``__init__``): kept alive
    while they run, then waited for (tests) or detached (closing the window never waits)."""

    _workers: set[GeneratorWorker]

    def _keep(self, worker: GeneratorWorker) -> None:
        from PySide6.QtCore import Qt

        self._workers.add(worker)
        worker.finished.connect(lambda: self._workers.discard(worker), Qt.ConnectionType.QueuedConnection)

    def wait_for_workers(self) -> None:
        for worker in list(self._workers):
            worker.wait()

    def detach_workers(self) -> None:
        for worker in list(self._workers):
            detach(worker)
        self._workers.clear()


def call_in_worker(target: str, *args: Any, parent=None, lane: str = INTERACTIVE_LANE,
                   **kwargs: Any) -> GeneratorWorker:
    """A worker that runs ``target(*args, **kwargs)`` once in the ``lane``'s helper process; yields the result.

    ``target`` is ``"module:function"``; arguments and the result must be picklable.
    """

    def factory(stop: Callable[[], bool]) -> Iterator[Any]:  # one call cannot stop halfway
        from concurrent.futures.process import BrokenProcessPool

        from dpsad_workbench.child import call, forwarded_env

        try:
            future = helper_pool(lane).submit(call, target, args, kwargs, forwarded_env())
        except BrokenProcessPool:
            _POOLS.pop(lane, None)  # the helper died (killed, out of memory): start a new one
            future = helper_pool(lane).submit(call, target, args, kwargs, forwarded_env())
        yield future.result()

    return GeneratorWorker(factory, parent=parent)


def default_torch_threads() -> int:
    """One thread per two cores, at least one: leaves a core for the GUI thread."""
    return max(1, (os.cpu_count() or 2) // 2)
