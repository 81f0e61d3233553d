"""The run lifecycle shared by training and DP-RDM (runs/lifecycle.py): the count drawn once and charged before
use, a spent cap refused with nothing drawn, the four ends of a run and what each leaves in the ledger."""

from __future__ import annotations

import pytest

from dpsad_core.errors import PrivacyBudgetError
from dpsad_core.privacy import PrivacyAccountant, noisy_count
from dpsad_core.privacy.ledger import PrivacyLedger
from dpsad_core.privacy.mechanisms import Mechanism
from dpsad_core.privacy.randomness import STREAM_IDS, SecretRandomness
from dpsad_core.runs import RunConfigRecord
from dpsad_core.runs.folder import RUNS_DIR, RunFolder
from dpsad_core.runs.lifecycle import (
    LedgerAccount,
    RunLife,
    certified_values,
    count_kept,
    count_plan,
    draw_count,
)

FINGERPRINT = "hmac-sha256:" + "ab" * 32
STEP = Mechanism(part="denoiser", noise_multiplier=1.0, sample_rate=0.01, steps=1, clip_norm=1.0)


def account(workspace, run_id: str = "20260101-000000-dpdm-0001") -> LedgerAccount:
    return LedgerAccount(workspace=workspace, run_id=run_id, fingerprint=FINGERPRINT, name="study", kind="train",
                         recipe="dpdm")


@pytest.fixture
def draws(monkeypatch):
    seen = []

    def draw(stream, sigma):
        seen.append(stream._id)
        return 37.25

    monkeypatch.setattr(noisy_count, "count_noise", draw)
    return seen


def test_the_count_is_drawn_once_from_the_count_stream_and_spent_before_use(workspace, draws):
    count = draw_count(account(workspace), num_units=1399, declared=False, randomness=SecretRandomness.fresh(),
                       delta=None)
    assert count.published == 1400 and draws == [STREAM_IDS["count"]]
    (entry,) = PrivacyLedger(workspace).entries(FINGERPRINT)
    assert entry.mechanisms == (noisy_count.count_mechanism(),) and not entry.active
    plan = count_plan(count, declared=False, exact_units=1399)
    assert plan == {"private_units": 1400, "units_from": "noisy count",
                    "count_mechanism": noisy_count.count_mechanism().to_dict()}


def test_a_declared_count_draws_and_spends_nothing(workspace, draws):
    assert draw_count(account(workspace), num_units=1399, declared=True, randomness=SecretRandomness.fresh(),
                      delta=None) is None
    assert draws == [] and PrivacyLedger(workspace).entries() == []
    assert count_plan(None, declared=True, exact_units=1399)["private_units"] == 1399


def test_a_spent_cap_refuses_before_the_draw(workspace, draws):
    ledger = PrivacyLedger(workspace)
    ledger.record_spend(run_id="earlier", dataset_fingerprint=FINGERPRINT, kind="train", delta=1e-5,
                        mechanisms=[Mechanism(part="denoiser", noise_multiplier=0.8, sample_rate=0.1, steps=500,
                                               clip_norm=1.0)])
    ledger.set_cap(FINGERPRINT, ledger.summary(FINGERPRINT).spent.certified)
    with pytest.raises(PrivacyBudgetError, match="over the cap"):
        draw_count(account(workspace), num_units=1399, declared=False, randomness=SecretRandomness.fresh(),
                   delta=None)
    assert draws == [] and [entry.run_id for entry in ledger.entries()] == ["earlier"]


def test_a_refusal_after_the_draw_says_the_count_stays_spent():
    count = noisy_count.NoisyCount(published=1400, noise_multiplier=100.0)
    with pytest.raises(PrivacyBudgetError, match="over; the noisy count drawn for run r1 stays spent") as caught, \
            count_kept(count, "r1"):
        raise PrivacyBudgetError("over", remedy="lower epsilon")
    assert caught.value.remedy == "lower epsilon"
    with pytest.raises(PrivacyBudgetError, match="^over$"), count_kept(None, "r1"):
        raise PrivacyBudgetError("over")


def test_the_ends_of_a_run(workspace):
    ledger = PrivacyLedger(workspace)
    accountant = PrivacyAccountant(delta=1e-5)
    for end in ("interrupt", "fail", "abort"):
        run_id = f"20260101-000000-dpdm-{end}"
        folder = RunFolder(workspace / RUNS_DIR / run_id)
        life = RunLife.reserve(account(workspace, run_id), folder, delta=1e-5, private=True, planned=[STEP])
        assert not folder.path.exists()  # the reservation comes before the folder
        life.create(workspace, RunConfigRecord(config={}, dataset={}, plan={}))
        life.record(accountant, STEP)  # the step is recorded before it runs
        if end == "interrupt":
            life.interrupt(accountant, phase="denoiser", step=0, message="stopped")
        elif end == "fail":
            life.fail(RuntimeError("boom"), phase="denoiser", step=0)
        else:
            life.abort(phase="denoiser", step=0, message="cut off")
        (entry,) = [entry for entry in ledger.entries(FINGERPRINT) if entry.run_id == run_id]
        assert not entry.active  # the reservation is gone in every end
        state = folder.status()["state"]
        assert state == {"interrupt": "interrupted", "fail": "failed", "abort": "interrupted"}[end]
        if end == "interrupt":
            assert entry.mechanisms == ()  # closed at a step boundary: what the accountant spent
        else:
            assert entry.mechanisms == (STEP,)  # cut inside the step: the step recorded before it ran stays


def test_certified_values_are_the_smaller_bound():
    values, note = certified_values(mechanisms=[STEP], delta=1e-5)
    assert note is None and values.certified == min(values.rdp, values.prv)


def test_a_stopped_run_states_the_epsilon_its_ledger_entry_holds(workspace):
    # Found in the walk-through: a cancelled run listed "epsilon spent 7.61" (its RDP progress bound) on Runs
    # while the dataset's budget panel listed the same run at 6.14 (the ledger's min(RDP, PRV)).
    accountant = PrivacyAccountant(delta=1e-5)
    run_id = "20260101-000000-dpdm-stop"
    folder = RunFolder(workspace / RUNS_DIR / run_id)
    life = RunLife.reserve(account(workspace, run_id), folder, delta=1e-5, private=True, planned=[STEP] * 40)
    life.create(workspace, RunConfigRecord(config={}, dataset={}, plan={}))
    for _ in range(40):
        life.record(accountant, STEP)
        accountant.step(part="denoiser", noise_multiplier=1.0, sample_rate=0.01, clip_norm=1.0)
    life.interrupt(accountant, phase="denoiser", step=40, message="stopped")
    (entry,) = [entry for entry in PrivacyLedger(workspace).entries(FINGERPRINT) if entry.run_id == run_id]
    ledger_epsilon = entry.values()[0].certified
    assert ledger_epsilon < accountant.epsilon_rdp()  # PRV is the tighter bound here: the case that differed
    assert folder.status()["epsilon_spent"] == pytest.approx(ledger_epsilon)
