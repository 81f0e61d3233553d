"""The privacy ledger as a store: composition across runs, the budget cap, reservations, concurrency, kills."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpsad_core.errors import ConfigError, PrivacyBudgetError, RunError
from dpsad_core.privacy import RDP_ORDERS, Mechanism, compute_epsilon
from dpsad_core.privacy.ledger import LEDGER_FILE, PrivacyLedger

FP = "hmac-sha256:" + "ab" * 32
OTHER = "hmac-sha256:" + "cd" * 32
REPO = Path(__file__).resolve().parents[2]


def mech(sigma: float, rate: float, steps: int, part: str = "dpdm") -> Mechanism:
    return Mechanism(part=part, noise_multiplier=sigma, sample_rate=rate, steps=steps)


RUN_A = [mech(1.1, 0.02, 100, "teacher"), mech(0.9, 0.02, 50, "student+discriminator")]
RUN_B = [mech(1.5, 0.05, 100)]


def record(ledger: PrivacyLedger, run_id: str, mechanisms, *, delta: float = 1e-5, fingerprint: str = FP,
           private: bool = True, finished: bool = True) -> None:
    ledger.record_spend(run_id=run_id, dataset_fingerprint=fingerprint, dataset_name="xrays", kind="train",
                        recipe="dpsad-split", delta=delta, mechanisms=mechanisms, private=private, finished=finished)


def opacus_epsilons(mechanisms, delta: float) -> tuple[float, float]:
    """The independent computation: Opacus' own RDP analysis and PRVAccountant over the joint history."""
    from opacus.accountants import PRVAccountant
    from opacus.accountants.analysis import rdp as analysis

    history = [(m.noise_multiplier, m.sample_rate, m.steps) for m in mechanisms]
    curve = sum(analysis.compute_rdp(q=q, noise_multiplier=s, steps=n, orders=list(RDP_ORDERS)) for s, q, n in history)
    rdp, _ = analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=curve, delta=delta)
    prv = PRVAccountant()
    prv.history = list(history)
    return float(rdp), float(prv.get_epsilon(delta=delta))


# -- composition -----------------------------------------------------------------------------------
@pytest.mark.slow  # about 3 s, plus importing opacus (torch) when it runs first
def test_total_composes_all_runs_like_opacus_and_beats_the_naive_sum(workspace):
    ledger = PrivacyLedger(workspace)
    record(ledger, "run-a", RUN_A, delta=1e-5)
    record(ledger, "run-b", RUN_B, delta=1e-6)
    summary = ledger.summary(FP)
    assert [e.run_id for e in summary.entries] == ["run-a", "run-b"]
    assert summary.spent.delta == 1e-6  # the smallest delta of the runs
    rdp, prv = opacus_epsilons(RUN_A + RUN_B, 1e-6)
    assert summary.spent.rdp == pytest.approx(rdp, rel=1e-9)
    assert summary.spent.prv == pytest.approx(prv, rel=1e-6)
    assert summary.spent.certified == pytest.approx(min(rdp, prv), rel=1e-6)
    alone = [entry.values()[0].certified for entry in summary.entries]
    assert alone[0] == pytest.approx(compute_epsilon(RUN_A, delta=1e-5).certified)
    assert max(alone) < summary.spent.certified < sum(alone)  # composed: more than either, less than the sum


def test_a_run_with_a_larger_delta_never_lowers_the_total(workspace):
    ledger = PrivacyLedger(workspace)
    record(ledger, "strict", RUN_B, delta=1e-7)
    before = ledger.summary(FP).spent
    record(ledger, "loose", [mech(2.0, 0.01, 20)], delta=1e-3)
    after = ledger.summary(FP).spent
    assert after.delta == 1e-7
    assert after.certified >= before.certified


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(st.tuples(st.floats(0.6, 3.0), st.floats(0.001, 0.2), st.integers(1, 200),
                               st.sampled_from([1e-4, 1e-5, 1e-6, 1e-7])), min_size=1, max_size=4))
def test_adding_a_run_never_lowers_the_total(tmp_path_factory, runs):
    ledger = PrivacyLedger(tmp_path_factory.mktemp("ledger"))
    previous = 0.0
    for i, (sigma, rate, steps, delta) in enumerate(runs):
        record(ledger, f"run-{i}", [mech(sigma, rate, steps)], delta=delta)
        total = ledger.summary(FP, accountants=("rdp",)).spent.certified
        assert total >= previous - 1e-12
        previous = total


def test_a_nonprivate_run_makes_the_dataset_total_infinite(workspace):
    ledger = PrivacyLedger(workspace)
    record(ledger, "dp", RUN_B)
    record(ledger, "paper", [mech(0.8, 0.02, 10, "student")], private=False)
    summary = ledger.summary(FP)
    assert math.isinf(summary.spent.certified) and not summary.private
    assert summary.to_dict()["spent"]["certified"] is None
    assert ledger.summary(OTHER).spent.certified == 0.0  # other data is untouched


def test_recording_replaces_the_runs_entry(workspace):
    ledger = PrivacyLedger(workspace)
    record(ledger, "run-a", [mech(1.0, 0.01, 10)])
    record(ledger, "run-a", [mech(1.0, 0.01, 25)])
    entries = ledger.entries(FP)
    assert len(entries) == 1 and entries[0].mechanisms == (mech(1.0, 0.01, 25),)
    assert ledger.datasets() == [{"fingerprint": FP, "name": "xrays", "cap_epsilon": None, "runs": 1}]
    with pytest.raises(RunError, match="another dataset"):
        record(ledger, "run-a", RUN_B, fingerprint=OTHER)


# -- cap and reservations --------------------------------------------------------------------------
def test_cap_refuses_a_run_that_would_exceed_it_with_the_numbers(workspace):
    ledger = PrivacyLedger(workspace)
    record(ledger, "run-a", RUN_A)
    spent = ledger.summary(FP).spent.certified
    ledger.set_cap(FP, spent + 0.5)
    ledger.check_budget(FP, planned=[mech(2.0, 0.01, 20)], delta=1e-5)  # a cheap run fits
    with pytest.raises(PrivacyBudgetError) as refused:
        ledger.check_budget(FP, planned=RUN_B, delta=1e-5)
    message = str(refused.value)
    assert f"cap of {spent + 0.5:g}" in message and f"{spent:.4g} is already spent" in message
    assert "this run plans" in message and "--cap" in message
    assert refused.value.exit_code == 4
    ledger.set_cap(FP, None)
    assert ledger.check_budget(FP, planned=RUN_B, delta=1e-5).fits


def test_cap_refuses_any_nonprivate_run(workspace):
    ledger = PrivacyLedger(workspace)
    ledger.set_cap(FP, 100.0, dataset_name="xrays")
    with pytest.raises(PrivacyBudgetError, match="not differentially private"):
        ledger.check_budget(FP, planned=[], delta=1e-5, private=False)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "8", True])
def test_bad_cap_is_a_config_error(workspace, bad):
    with pytest.raises(ConfigError, match="cap"):
        PrivacyLedger(workspace).set_cap(FP, bad)


def test_active_reservations_count_against_the_cap_and_a_resume_is_not_counted_twice(workspace):
    ledger = PrivacyLedger(workspace)
    alone = compute_epsilon(RUN_B, delta=1e-5).certified
    twice = compute_epsilon(RUN_B + RUN_B, delta=1e-5).certified
    ledger.set_cap(FP, (alone + twice) / 2)  # one RUN_B fits, two do not
    ledger.reserve(run_id="first", dataset_fingerprint=FP, kind="train", delta=1e-5, planned=RUN_B)
    with pytest.raises(PrivacyBudgetError):  # the first run's plan is held while it runs
        ledger.reserve(run_id="second", dataset_fingerprint=FP, kind="train", delta=1e-5, planned=RUN_B)
    assert [e.run_id for e in ledger.entries(FP)] == ["first"]  # a refusal writes nothing
    record(ledger, "first", [mech(1.5, 0.05, 100)], finished=False)  # part-way: still reserved
    assert ledger.entries(FP)[0].active
    # The first run resumes: its own entry is replaced, not added.
    ledger.reserve(run_id="first", dataset_fingerprint=FP, kind="train", delta=1e-5, planned=RUN_B)
    assert ledger.entries(FP)[0].mechanisms == (mech(1.5, 0.05, 100),)  # the spend is kept
    record(ledger, "first", [mech(1.5, 0.05, 100)], finished=True)  # stopped early: the rest is free again
    summary = ledger.summary(FP)
    assert not summary.entries[0].active
    assert summary.committed == summary.spent
    assert summary.remaining == pytest.approx(summary.cap_epsilon - summary.spent.certified)


def test_dropping_a_reservation_keeps_the_spend(workspace):
    ledger = PrivacyLedger(workspace)
    ledger.reserve(run_id="r", dataset_fingerprint=FP, kind="train", delta=1e-5, planned=RUN_B)
    record(ledger, "r", [mech(1.5, 0.05, 7)], finished=False)
    ledger.drop_reservation("r")
    (entry,) = ledger.entries(FP)
    assert not entry.active and entry.mechanisms == (mech(1.5, 0.05, 7),)


def test_committed_is_at_least_spent_when_a_run_outspends_its_reservation(workspace):
    ledger = PrivacyLedger(workspace)
    ledger.reserve(run_id="r", dataset_fingerprint=FP, kind="rdm", delta=1e-5, planned=[mech(1.5, 0.05, 10)])
    record(ledger, "r", [mech(1.5, 0.05, 50), mech(2.0, 0.1, 5)], finished=False)
    (entry,) = ledger.entries(FP)
    assert sorted(m.steps for m in entry.committed()) == [5, 50]


def test_an_unreadable_ledger_is_a_clear_error(workspace):
    (workspace / LEDGER_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunError, match=LEDGER_FILE):
        PrivacyLedger(workspace).summary(FP)


# -- processes -------------------------------------------------------------------------------------
def _python(code: str, workspace: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(workspace), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


WRITER = """
    import sys, time
    from dpsad_core.privacy import Mechanism
    from dpsad_core.privacy.ledger import PrivacyLedger
    ledger, name, count = PrivacyLedger(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    while time.time() < float(sys.argv[4]):
        time.sleep(0.001)  # start together
    for i in range(1, count + 1):
        mechanisms = [Mechanism(part="dpdm", noise_multiplier=1.0, sample_rate=0.01, steps=i)]
        ledger.record_spend(run_id=f"{name}-{i % 7}", dataset_fingerprint="fp-" + str(i % 7 % 3), kind="train",
                            delta=1e-5, mechanisms=mechanisms, finished=i % 2 == 0)
        if i % 5 == 0:
            ledger.set_cap("fp-0", 10.0 + i)
        print(i, flush=True)
"""


def test_two_processes_writing_at_once_lose_nothing(workspace):
    start = str(time.time() + 1.5)
    procs = [_python(WRITER, workspace, name, "300", start) for name in ("p", "q")]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.split()[-1] == "300"
    entries = PrivacyLedger(workspace).entries()
    assert len(entries) == 14  # 7 run ids per writer, none lost
    # Each run's row holds its last write: run k of a writer was last written at the largest i <= 300, i % 7 == k.
    last = {f"{name}-{k}": max(i for i in range(1, 301) if i % 7 == k) for name in "pq" for k in range(7)}
    assert {e.run_id: e.mechanisms[0].steps for e in entries} == last


def test_a_kill_during_writes_leaves_the_last_committed_state(workspace):
    proc = _python(WRITER.replace("run_id=f\"{name}-{i % 7}\"", "run_id=name").replace(
        "\"fp-\" + str(i % 7 % 3)", "\"fp-0\""), workspace, "k", "1000000", str(time.time()))
    committed = 0
    deadline = time.time() + 60
    while committed < 200 and time.time() < deadline:  # let it write a while, then kill it mid-stream
        committed = int(proc.stdout.readline() or 0) or committed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rest = proc.stdout.read().split()
    last_printed = int(rest[-1]) if rest else committed
    with sqlite3.connect(workspace / LEDGER_FILE) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (entry,) = PrivacyLedger(workspace).entries()
    # The row holds the last commit: the last one printed, or the one committed before its print.
    assert entry.mechanisms[0].steps in (last_printed, last_printed + 1)


RESERVER = """
    import sys, time
    from dpsad_core.errors import PrivacyBudgetError
    from dpsad_core.privacy import Mechanism, compute_epsilon
    from dpsad_core.privacy.ledger import PrivacyLedger
    ledger = PrivacyLedger(sys.argv[1])
    planned = [Mechanism(part="dpdm", noise_multiplier=1.5, sample_rate=0.05, steps=100)]  # RUN_B
    compute_epsilon(planned, delta=1e-5)  # import opacus before the race
    while time.time() < float(sys.argv[3]):
        time.sleep(0.001)
    try:
        ledger.reserve(run_id=sys.argv[2], dataset_fingerprint="fp", kind="train", delta=1e-5, planned=planned)
        print("reserved")
    except PrivacyBudgetError:
        print("refused")
"""


@pytest.mark.slow
def test_two_runs_starting_at_once_cannot_both_take_the_last_budget(workspace):
    ledger = PrivacyLedger(workspace)
    alone = compute_epsilon(RUN_B, delta=1e-5).certified
    twice = compute_epsilon(RUN_B + RUN_B, delta=1e-5).certified
    ledger.set_cap("fp", (alone + twice) / 2)
    start = str(time.time() + 8)
    procs = [_python(RESERVER, workspace, name, start) for name in ("one", "two")]
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        answers.append(out.strip())
    assert sorted(answers) == ["refused", "reserved"]
