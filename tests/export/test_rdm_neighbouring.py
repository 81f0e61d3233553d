"""DP-RDM on neighbouring indexes D and D' (one record added): the bundles differ in nothing that states the count.

DP-RDM publishes the same noisy count as training (privacy/noisy_count.py): delta, the report's count and the
Croissant description come from it, never from the index's exact N (rounding N alone told D from D' at a rounding
boundary with certainty)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.data import resolve_data_source, save_dataset
from dpsad_core.export.bundle import export_bundle
from dpsad_core.export.layout import CROISSANT, LABELS, REPORT_HTML, REPORT_JSON
from dpsad_core.privacy.ledger import PrivacyLedger
from dpsad_core.rdm.generation import GenerateConfig, generate_rdm
from dpsad_core.rdm.index import build_index
from dpsad_core.rdm.store import load_public_model
from tests.export.test_neighbouring import stable
from tests.fixtures.rdm import MODEL

NOISE = 37.25  # the pinned draw: 199 + 37.25 and 200 + 37.25 both publish 230 (rounded alone: 190 and 200)


@pytest.fixture
def pinned_count(monkeypatch):
    """The count's noise fixed to the same value for D and D' (in a real run it is secret and fresh)."""
    draws = []

    def draw(stream, sigma):
        draws.append(sigma)
        return NOISE

    monkeypatch.setattr("dpsad_core.privacy.noisy_count.count_noise", draw)
    return draws


def bundle_of(rdm_base: Path, tmp_path: Path, name: str, records: int) -> tuple[Path, dict]:
    """A copy of the tiny DP-RDM workspace with an index of the first ``records`` private records, one run, one
    bundle."""
    workspace = tmp_path / f"ws-{name}"
    shutil.copytree(rdm_base, workspace)
    private = resolve_data_source("private", workspace=workspace)
    study = dataclasses.replace(private.subset(np.arange(records)), name="study", name_declared=True)
    save_dataset(study, workspace)
    build_index(workspace=workspace, public_model=load_public_model(MODEL, workspace=workspace), data="study",
                name="study-index")
    config = GenerateConfig(model=MODEL, index="study-index", epsilon=10.0, k=5, sample_rate=0.1, sigma=0.3,
                            per_class=1, sample_steps=2, seed=0)
    result = list(generate_rdm(config, workspace=workspace))[-1].result
    events = list(export_bundle(result["run_id"], workspace=workspace, out=tmp_path / f"out-{name}" / "bundle"))
    return events[-1].bundle_path, result


@pytest.mark.slow
def test_d_and_d_prime_dp_rdm_bundles_do_not_state_the_count(rdm_base, tmp_path, pinned_count):
    base, result = bundle_of(rdm_base, tmp_path, "d", 199)
    added, _ = bundle_of(rdm_base, tmp_path, "d-prime", 200)
    for name in (REPORT_JSON, CROISSANT, LABELS):  # the HTML also shows the images, which differ by the noise
        first, second = (stable((bundle / name).read_text()) for bundle in (base, added))
        assert first == second, (name, [line for line in difflib.ndiff(first.splitlines(), second.splitlines())
                                        if line[:1] in "+-"])
    assert pinned_count == [100.0, 100.0]  # one draw per run
    report = json.loads((base / REPORT_JSON).read_text())
    dataset = report["dataset"]
    assert dataset["num_records"] is None and dataset["num_privacy_units"] is None
    assert dataset["num_privacy_units_published"] == 230 and "noisy count" in dataset["count"]
    assert dataset["count_noise"] == 100.0
    assert "about 230 privacy units (a noisy count" in (base / REPORT_HTML).read_text()
    # The count is a mechanism of the run: composed in its epsilon, its report and its ledger entry.
    assert [m["part"] for m in report["mechanisms"]] == ["count", "rdm-retrieval"]
    assert [m["part"] for m in result["mechanisms"]] == ["count", "rdm-retrieval"]
    assert report["plan"]["private_units"] == 230 and report["plan"]["units_from"] == "noisy count"
    (entry,) = PrivacyLedger(tmp_path / "ws-d").entries(result["dataset"]["fingerprint"])
    assert [m.to_dict() for m in entry.mechanisms] == result["mechanisms"]
    assert result["delta"] == pytest.approx(1e-5)
    # The subsample, the noise and the count come from the run's secret ChaCha20 key (it said PCG64 before).
    assert any("cryptographically secure generator" in line for line in report["plain_language"]["does_not_mean"])
    assert np.load(Path(result["samples_npz"]))["images"].shape[0] == 10
