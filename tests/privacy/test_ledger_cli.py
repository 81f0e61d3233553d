"""``dpsad-core ledger``: listing, one dataset's runs, caps, JSON, and one-line errors."""

from __future__ import annotations

import json

import pytest

from dpsad_core.cli import main
from dpsad_core.data import resolve_data_source
from dpsad_core.privacy import Mechanism, compute_epsilon
from dpsad_core.privacy.ledger import PrivacyLedger

SPEND = [Mechanism(part="denoiser", noise_multiplier=1.2, sample_rate=0.02, steps=60)]


@pytest.fixture
def demo_fp(workspace) -> str:
    return resolve_data_source("demo", workspace=workspace).fingerprint()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["ledger", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_empty_ledger_says_so(workspace, capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0 and "nothing recorded yet" in out


@pytest.mark.slow  # about 3 s, plus importing opacus (torch) when it runs first
def test_list_show_cap_and_json(workspace, capsys, demo_fp):
    ledger = PrivacyLedger(workspace)
    for run_id in ("run-1", "run-2"):
        ledger.record_spend(run_id=run_id, dataset_fingerprint=demo_fp, dataset_name="demo-digits-train",
                            kind="train", recipe="dpdm", delta=1e-5, mechanisms=SPEND, finished=True)
    total = compute_epsilon(SPEND * 2, delta=1e-5).certified

    code, out, _ = run_cli(capsys)
    assert code == 0 and "demo-digits-train" in out and f"{total:.4g}" in out

    code, out, _ = run_cli(capsys, "demo", "--cap", "9")
    assert code == 0
    assert "run-1" in out and "run-2" in out and "no folder" in out
    assert f"composed: epsilon {total:.4g} at delta 1e-05" in out and "cap: 9, left:" in out

    code, out, _ = run_cli(capsys, demo_fp.removeprefix("hmac-sha256:")[:12], "--json")  # a fingerprint prefix
    data = json.loads(out)
    assert code == 0 and data["cap_epsilon"] == 9.0 and data["dataset_fingerprint"] == demo_fp
    assert data["spent"]["certified"] == pytest.approx(total)
    assert data["remaining"] == pytest.approx(9.0 - total)
    assert [run["run_id"] for run in data["runs"]] == ["run-1", "run-2"]
    assert data["runs"][0]["epsilon"]["certified"] == pytest.approx(compute_epsilon(SPEND, delta=1e-5).certified)

    code, out, _ = run_cli(capsys, "demo", "--cap", f"{total / 2:g}")  # a cap below what was spent
    assert code == 0 and "OVER THE CAP" in out and "left: 0" in out

    code, out, _ = run_cli(capsys, "demo-digits-train", "--remove-cap", "--json")  # a name the ledger knows
    assert code == 0 and json.loads(out)["cap_epsilon"] is None

    code, out, _ = run_cli(capsys, "--json")
    (listed,) = json.loads(out)["datasets"]
    assert listed["runs"] == 2 and listed["spent"]["certified"] == pytest.approx(total)


def test_a_nonprivate_run_shows_infinity(workspace, capsys, demo_fp):
    PrivacyLedger(workspace).record_spend(run_id="paper", dataset_fingerprint=demo_fp, kind="train",
                                          recipe="dpsad-paper", delta=1e-5, mechanisms=SPEND, private=False)
    code, out, _ = run_cli(capsys, "demo")
    assert code == 0 and "inf (NOT PRIVATE)" in out and "NOT differentially private" in out


@pytest.mark.parametrize(("args", "code", "text"), [
    (("--cap", "5"), 2, "need a DATASET"),
    (("demo", "--cap", "-1"), 2, "finite epsilon > 0"),
    (("no-such-data",), 3, "not a fingerprint or a dataset name"),
])
def test_mistakes_are_one_line_with_the_error_code(workspace, capsys, args, code, text):
    got, out, err = run_cli(capsys, *args)
    assert got == code and text in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_over_the_cap_exits_4_with_the_numbers(workspace, capsys, demo_fp):
    PrivacyLedger(workspace).set_cap(demo_fp, 0.5)
    code = main(["train", "--data", "demo", "--recipe", "dpdm", "--preset", "tiny", "--epsilon", "4",
                 "--device", "cpu"])
    _, err = capsys.readouterr()
    assert code == 4 and "over the cap of 0.5" in err and "--cap" in err
    assert not (workspace / "runs").exists()


@pytest.mark.slow
def test_drop_reservation_drops_a_dead_runs_reservation_but_not_a_live_one(workspace, capsys, demo_fp):
    from dpsad_core.runs.folder import RunFolder

    ledger = PrivacyLedger(workspace)
    ledger.set_cap(demo_fp, 50.0, dataset_name="demo-digits-train")
    ledger.reserve(run_id="killed", dataset_fingerprint=demo_fp, kind="train", delta=1e-5, planned=SPEND * 3)
    ledger.record_spend(run_id="killed", dataset_fingerprint=demo_fp, kind="train", delta=1e-5, mechanisms=SPEND)
    held = ledger.summary(demo_fp)
    assert held.committed.certified > held.spent.certified  # the plan still counts against the cap

    live = RunFolder.create(workspace, "killed")
    live.lock()  # as if the run were still training
    code, _, err = run_cli(capsys, "--drop-reservation", "killed")
    assert code == 6 and "being trained" in err
    live.unlock()

    code, out, _ = run_cli(capsys, "--release", "killed")  # its former name still works
    assert code == 0 and "dropped" in out
    after = ledger.summary(demo_fp)
    assert after.committed.certified == pytest.approx(after.spent.certified)
    assert after.spent.certified == pytest.approx(compute_epsilon(SPEND, delta=1e-5).certified)
    code, _, err = run_cli(capsys, "--drop-reservation", "no-such-run")
    assert code == 6 and "not in the ledger" in err
