"""Neighbouring datasets D and D' (one record added): their bundles differ in nothing that names the record, its
class or the count, beyond what the noise changes; a record of an undeclared class is refused in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpsad_core.cli import main
from dpsad_core.data import load_demo

DIGITS = ",".join(str(digit) for digit in range(10))
VOLATILE = re.compile(r"\d{8}-\d{6}-[a-z-]+-[0-9a-f]{4}|hmac-sha256:[0-9a-f]{64}|sha256:[0-9a-f]{64}|[0-9a-f]{64}|"
                      r"\d{4}-\d\d-\d\dT[0-9:.+]+")


def write_manifest(root: Path, rows, extra: tuple[str, str] | None = None) -> Path:
    demo = load_demo()
    root.mkdir(parents=True)
    lines = ["path,label"]
    for row in rows:
        Image.fromarray(np.rint(demo.images[row, 0] * 255).astype(np.uint8)).save(root / f"{row}.png")
        lines.append(f"{row}.png,{demo.class_names[int(demo.labels[row])]}")
    if extra is not None:  # one more record: (image row of the demo, label)
        Image.fromarray(np.rint(demo.images[int(extra[0]), 0] * 255).astype(np.uint8)).save(root / "extra.png")
        lines.append(f"extra.png,{extra[1]}")
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    return root / "list.csv"


def bundle_of(tmp_path: Path, monkeypatch, capsys, name: str, manifest: Path, *import_flags: str) -> Path:
    workspace = tmp_path / f"ws-{name}"
    monkeypatch.setenv("DPSAD_WORKSPACE", str(workspace))
    assert main(["import", str(manifest), "--name", "study", "--classes", DIGITS, "--min-records", "0",
                 *import_flags]) == 0, capsys.readouterr().err
    assert main(["train", "--data", "study", "--recipe", "dpdm", "--preset", "tiny", "--max-steps", "2",
                 "--device", "cpu", "--min-records", "0", "--json"]) == 0, capsys.readouterr().err
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    out = tmp_path / f"out-{name}" / "bundle"
    assert main(["export", run_id, "--out", str(out), "--per-class", "1", "--device", "cpu"]) == 0, \
        capsys.readouterr().err
    return out


@pytest.fixture
def pinned_count(monkeypatch):
    """The noisy count's draw fixed to the same value for D and D' (in a real run it is secret and fresh)."""
    monkeypatch.setattr("dpsad_core.privacy.noisy_count.count_noise", lambda stream, sigma: 37.25)


def stable(text: str) -> str:
    """The text with run ids, hashes and dates (which differ between any two runs, even on the same data) blanked
    out. The training time is not blanked: it grows with the Poisson batches, so a bundle must not carry it."""
    return VOLATILE.sub("*", text)


@pytest.mark.slow
def test_d_and_d_prime_bundles_differ_only_in_noise(tmp_path, monkeypatch, capsys, pinned_count):
    # 199 and 200 records straddle a rounding boundary: rounded exactly, they were planned as 190 and 200. With
    # the count's noise drawn the same (+37.25) for both, both publish 230; only a draw's rounding could differ.
    rows = range(199)
    base = bundle_of(tmp_path, monkeypatch, capsys, "d", write_manifest(tmp_path / "d", rows))
    added = bundle_of(tmp_path, monkeypatch, capsys, "d-prime", write_manifest(tmp_path / "d2", rows, ("700", "3")))
    for name in ("privacy-report.json", "croissant.json", "labels.csv"):
        first, second = (stable((bundle / name).read_text()) for bundle in (base, added))
        assert first == second, name
    report = json.loads((base / "privacy-report.json").read_text())
    dataset = report["dataset"]
    assert dataset["num_records"] is None and dataset["num_privacy_units"] is None
    assert dataset["num_privacy_units_published"] == 230 and "noisy count" in dataset["count"]
    assert dataset["count_noise"] == 100.0
    assert "about 230 privacy units (a noisy count" in (base / "privacy-report.html").read_text()
    assert "add or remove one image" in dataset["neighbouring"]
    assert "declared public by the analyst" in dataset["class_names_from"]
    assert report["plan"]["private_units"] == 230  # the sample rate was computed from the published count
    # The count is a mechanism like the training steps: in the report and in epsilon.
    assert [m["part"] for m in report["mechanisms"]] == ["count", "denoiser"]
    assert report["plan"]["planned_epsilon"]["certified"] <= report["guarantee"]["epsilon_target"]


@pytest.mark.slow
def test_a_declared_count_is_published_exactly(tmp_path, monkeypatch, capsys):
    bundle = bundle_of(tmp_path, monkeypatch, capsys, "d", write_manifest(tmp_path / "d", range(151)),
                       "--public-count")
    report = json.loads((bundle / "privacy-report.json").read_text())
    dataset = report["dataset"]
    assert dataset["num_records"] == dataset["num_privacy_units"] == 151 and "exact" in dataset["count"]
    assert dataset["count_noise"] is None and report["plan"]["count_mechanism"] is None
    assert [m["part"] for m in report["mechanisms"]] == ["denoiser"]  # a declared count spends nothing


def test_a_record_of_an_undeclared_class_is_refused_in_one_line(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "d", range(150), ("700", "rare-syndrome-X"))
    code = main(["import", str(manifest), "--name", "study", "--classes", DIGITS, "--min-records", "0"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1
    assert "1 record(s) have a label that is not among the declared classes ('rare-syndrome-X'), at rows 151" in err
    assert "--classes" in err and str(manifest) in err


def test_class_names_read_from_folders_must_be_declared(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "d", range(150))
    code = main(["import", str(manifest), "--name", "study", "--min-records", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "declare it" in err and "--classes" in err
