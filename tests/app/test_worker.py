"""The generator worker relays a generator's items, errors and aborts as signals, in a fixed order."""

from __future__ import annotations

import os
import threading

from dpsad_workbench.worker import GeneratorWorker, ProcessGeneratorWorker, call_in_worker


def test_yields_then_finishes_in_strict_order(qtbot):
    received = []
    threads = []

    def factory(stop):
        def generate():
            threads.append(threading.get_ident())
            yield 1
            yield 2

        return generate()

    worker = GeneratorWorker(factory)
    worker.yielded.connect(received.append)
    with qtbot.waitSignals([worker.started_work, worker.yielded, worker.yielded, worker.finished_work],
                           order="strict", timeout=10_000):
        worker.start()
    worker.wait()
    assert received == [1, 2]
    assert threads and threads[0] != threading.get_ident()  # the generator ran off the GUI thread


def test_an_error_is_relayed_then_finished(qtbot):
    from dpsad_core.errors import ConfigError

    def factory(stop):
        def generate():
            yield "first"
            raise ConfigError("epsilon must be a positive number", field="epsilon", remedy="pass --epsilon 10")

        return generate()

    worker = GeneratorWorker(factory)
    errors = []
    worker.errored.connect(errors.append)
    with qtbot.waitSignals([worker.started_work, worker.yielded, worker.errored, worker.finished_work],
                           order="strict", timeout=10_000):
        worker.start()
    worker.wait()
    assert isinstance(errors[0], ConfigError) and errors[0].remedy == "pass --epsilon 10"


def test_stop_request_ends_with_aborted(qtbot):
    gate = threading.Event()

    def factory(stop):
        def generate():
            count = 0
            while not stop():
                count += 1
                yield count
                gate.wait(5)
            yield "stopped cleanly"

        return generate()

    worker = GeneratorWorker(factory)
    items = []
    worker.yielded.connect(items.append)
    with qtbot.waitSignals([worker.aborted, worker.finished_work], order="strict", timeout=10_000):
        worker.start()
        qtbot.waitUntil(lambda: len(items) >= 1, timeout=5_000)
        worker.request_stop()
        gate.set()
    worker.wait()
    assert items[-1] == "stopped cleanly"


def test_call_in_worker_runs_in_the_helper_process(qtbot):
    worker = call_in_worker("os:getpid")
    with qtbot.waitSignal(worker.yielded, timeout=60_000) as blocker:
        worker.start()
    worker.wait()
    assert blocker.args[0] != os.getpid()


def test_call_in_worker_relays_a_core_error_with_its_remedy(qtbot, tmp_path):
    from dpsad_core.errors import DataImportError

    worker = call_in_worker("dpsad_workbench.core:import_dataset", str(tmp_path / "missing"), workspace=tmp_path)
    with qtbot.waitSignal(worker.errored, timeout=60_000) as blocker:
        worker.start()
    worker.wait()
    error = blocker.args[0]
    assert isinstance(error, DataImportError) and error.path == tmp_path / "missing" and error.remedy


def test_process_worker_relays_events_in_strict_order(qtbot):
    worker = ProcessGeneratorWorker("tests.app.jobs:count_job", {"n": 2})
    received = []
    worker.yielded.connect(received.append)
    with qtbot.waitSignals([worker.started_work, worker.yielded, worker.yielded, worker.finished_work],
                           order="strict", timeout=60_000):
        worker.start()
    worker.wait()
    assert [r["index"] for r in received] == [0, 1]
    assert received[0]["pid"] != os.getpid()  # the generator ran in a child process


def test_process_worker_relays_errors_then_finishes(qtbot):
    from dpsad_core.errors import DataImportError

    worker = ProcessGeneratorWorker("tests.app.jobs:failing_job", {})
    errors = []
    worker.errored.connect(errors.append)
    with qtbot.waitSignals([worker.started_work, worker.yielded, worker.errored, worker.finished_work],
                           order="strict", timeout=60_000):
        worker.start()
    worker.wait()
    assert isinstance(errors[0], DataImportError)
    assert errors[0].remedy == "remove it or pass --skip-corrupt" and "/data/x.png" in str(errors[0])


def test_process_worker_stop_reaches_the_child(qtbot):
    worker = ProcessGeneratorWorker("tests.app.jobs:until_stopped_job", {})
    items = []
    worker.yielded.connect(items.append)
    with qtbot.waitSignals([worker.aborted, worker.finished_work], order="strict", timeout=60_000):
        worker.start()
        qtbot.waitUntil(lambda: len(items) >= 1, timeout=30_000)
        worker.request_stop()
    worker.wait()
    assert items[-1] == "stopped cleanly"


def test_a_step_timing_never_holds_up_an_interactive_call(qtbot):
    # The New run screen times a DP step when no step time is cached (tens of seconds, minutes under
    # load). It ran in the one helper process, so an import or a plan preview queued behind it waited
    # 2-3 minutes. Timings now have a helper process of their own.
    from dpsad_workbench.child import call, forwarded_env
    from dpsad_workbench.worker import TIMING_LANE, end_children, helper_pool

    timing = helper_pool(TIMING_LANE).submit(call, "time:sleep", (300,), {}, forwarded_env())
    try:
        worker = call_in_worker("os:getpid")
        with qtbot.waitSignal(worker.yielded, timeout=120_000) as blocker:
            worker.start()
        worker.wait()
        assert blocker.args[0] != os.getpid()
        assert not timing.done()  # answered while the timing still ran
    finally:
        end_children()  # ends the sleeping helper (and the interactive one: the next call starts a new one)
