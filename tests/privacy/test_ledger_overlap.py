"""A copy never opens a fresh budget: reordered, subset or re-imported-at-another-size data shares the ledger."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dpsad_core.cli import main
from dpsad_core.data import load_demo, resolve_data_source
from dpsad_core.errors import PrivacyBudgetError
from dpsad_core.privacy import Mechanism, compute_epsilon
from dpsad_core.privacy.ledger import PrivacyLedger
from dpsad_core.privacy.ledger_datasets import ledger_identity

DIGITS = ",".join(str(digit) for digit in range(10))
SPEND = [Mechanism(part="denoiser", noise_multiplier=1.2, sample_rate=0.02, steps=60)]


def write_digits(root, rows, *, size: int = 32, order=None):
    """Demo digits ``rows`` as a CSV manifest of PNGs at ``size`` pixels, listed in ``order``."""
    demo = load_demo(resolution=size)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,label"]
    for row in (rows if order is None else order):
        Image.fromarray(np.rint(demo.images[row, 0] * 255).astype(np.uint8)).save(root / f"r{row}.png")
        lines.append(f"r{row}.png,{demo.class_names[int(demo.labels[row])]}")
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    return root / "list.csv"


def import_as(capsys, path, name, *extra):
    assert main(["import", str(path), "--name", name, "--min-records", "0", "--classes", DIGITS, *extra]) == 0, \
        capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture
def capped(tmp_path, workspace, capsys):
    """Dataset 'original' (120 digits at 16 px) with one run's spend and a cap that one more run would break."""
    rows = list(range(120))
    import_as(capsys, write_digits(tmp_path / "original", rows), "original", "--resolution", "16")
    ledger = PrivacyLedger(workspace)
    fingerprint = ledger_identity(workspace, resolve_data_source("original", workspace=workspace, min_records=0))
    ledger.record_spend(run_id="run-1", dataset_fingerprint=fingerprint, dataset_name="original", kind="train",
                        recipe="dpdm", delta=1e-5, mechanisms=SPEND, finished=True)
    one = compute_epsilon(SPEND, delta=1e-5).certified
    two = compute_epsilon(SPEND * 2, delta=1e-5).certified
    ledger.set_cap(fingerprint, (one + two) / 2, dataset_name="original")
    return ledger, rows


def fingerprint_of(workspace, name):
    return resolve_data_source(name, workspace=workspace, min_records=0).fingerprint(workspace)


@pytest.mark.parametrize("variant", ["reordered", "subset", "resized"])
def test_a_copy_under_another_name_is_charged_against_the_original_cap(tmp_path, workspace, capsys, capped, variant):
    ledger, rows = capped
    if variant == "reordered":
        path, extra = write_digits(tmp_path / "copy", rows, order=rows[::-1]), ["--resolution", "16"]
    elif variant == "subset":
        path, extra = write_digits(tmp_path / "copy", rows[:50]), ["--resolution", "16"]
    else:
        path, extra = write_digits(tmp_path / "copy", rows), ["--resolution", "28"]
    out = import_as(capsys, path, "copy", *extra)
    if variant != "reordered":  # a reordered copy is the same dataset: the same ledger entry
        assert "shares records with original" in out
    copy = fingerprint_of(workspace, "copy")
    with pytest.raises(PrivacyBudgetError, match="original"):
        ledger.check_budget(copy, planned=SPEND, delta=1e-5)
    assert [entry.run_id for entry in ledger.summary(copy).entries] == ["run-1"]
    assert main(["ledger", "copy"]) == 0
    out = capsys.readouterr().out
    assert "run-1" in out
    if variant != "reordered":
        assert "shares records with original" in out
        assert main(["ledger", "--json"]) == 0
        listed = {row["dataset_name"]: row for row in json.loads(capsys.readouterr().out)["datasets"]}
        assert [o["name"] for o in listed["copy"]["overlaps"]] == ["original"]
        assert [o["name"] for o in listed["original"]["overlaps"]] == ["copy"]


def test_a_run_on_the_copy_counts_against_the_original_too(tmp_path, workspace, capsys, capped):
    ledger, rows = capped
    import_as(capsys, write_digits(tmp_path / "copy", rows[:60]), "copy", "--resolution", "16")
    copy = fingerprint_of(workspace, "copy")
    ledger.record_spend(run_id="run-2", dataset_fingerprint=copy, dataset_name="copy", kind="train", recipe="dpdm",
                        delta=1e-5, mechanisms=SPEND, finished=True)
    original = fingerprint_of(workspace, "original")
    assert {entry.run_id for entry in ledger.summary(original).entries} == {"run-1", "run-2"}
    assert ledger.summary(original).over_cap


def test_distinct_data_keeps_its_own_budget(tmp_path, workspace, capsys, capped):
    ledger, _ = capped
    out = import_as(capsys, write_digits(tmp_path / "other", range(600, 720)), "other", "--resolution", "16")
    assert "shares records" not in out
    other = fingerprint_of(workspace, "other")
    ledger.check_budget(other, planned=SPEND, delta=1e-5)  # no cap, no overlap: fits
    assert ledger.summary(other).entries == ()


def test_spends_under_a_fingerprint_of_an_earlier_version_keep_counting(workspace):
    from dpsad_core.data.fingerprint import fingerprint_arrays

    demo = resolve_data_source("demo", workspace=workspace)
    legacy = fingerprint_arrays(demo.images, demo.labels, demo.class_names, demo.patient_ids)  # config-folder key
    ledger = PrivacyLedger(workspace)
    ledger.record_spend(run_id="old-run", dataset_fingerprint=legacy, dataset_name="demo-digits-train", kind="train",
                        recipe="dpdm", delta=1e-5, mechanisms=SPEND, finished=True)
    ledger.set_cap(legacy, compute_epsilon(SPEND, delta=1e-5).certified * 1.01)
    current = ledger_identity(workspace, demo)
    assert current != legacy
    with pytest.raises(PrivacyBudgetError, match="demo-digits-train"):
        ledger.check_budget(current, planned=SPEND, delta=1e-5)
