"""export_bundle on a real tiny run: contents, round trip, refusals, atomicity, nothing private leaves."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpsad_core.errors import ConfigError, NotPrivateError, RunError
from dpsad_core.events import ExportFinished, ExportProgress, ExportStarted
from dpsad_core.export import signing
from dpsad_core.export.bundle import export_bundle
from dpsad_core.export.layout import (
    CROISSANT,
    GRID,
    LABELS,
    MANIFEST,
    NOT_DP_STAMP,
    NOT_DP_SUFFIX,
    NPZ,
    PARTIAL_PREFIX,
    REPORT_HTML,
    REPORT_JSON,
    SIGNATURE,
)
from dpsad_core.export.verify import verify_bundle
from tests.export.conftest import workspace_of

pytestmark = pytest.mark.slow


def run_export(run_dir: Path, out: Path, **options) -> ExportFinished:
    options.setdefault("device", "cpu")
    events = list(export_bundle(run_dir.name, workspace=workspace_of(run_dir), out=out, **options))
    assert isinstance(events[0], ExportStarted) and isinstance(events[-1], ExportFinished)
    assert any(isinstance(event, ExportProgress) and event.stage == "sampling" for event in events)
    return events[-1]


def test_round_trip_folder_bundle(private_run, tmp_path):
    finished = run_export(private_run, tmp_path / "bundle", per_class=3, npz=True)
    bundle = finished.bundle_path
    assert bundle == tmp_path / "bundle" and bundle.is_dir()
    result = json.loads((private_run / "result.json").read_text())
    verified = verify_bundle(bundle)
    assert verified.ok, verified.problems
    assert verified.summary["epsilon"] == pytest.approx(result["epsilon"]) and verified.summary["images"] == 30
    assert verified.summary["recipe"] == "dpsad-split" and verified.summary["private"] is True
    rows = list(csv.DictReader((bundle / LABELS).open()))
    assert len(rows) == 30 and [int(r["label"]) for r in rows] == [i // 3 for i in range(30)]
    for row in rows:
        image = Image.open(bundle / row["file_name"])
        assert image.size == (8, 8) and row["file_name"].startswith(f"images/{row['class_name']}/")
    with np.load(bundle / NPZ) as npz:
        assert npz["images"].shape == (30, 8, 8) and npz["labels"].tolist() == [i // 3 for i in range(30)]
        first = np.asarray(Image.open(bundle / rows[0]["file_name"]))
        assert np.array_equal(npz["images"][0], first)
    for name in (CROISSANT, REPORT_JSON, REPORT_HTML, GRID, MANIFEST, SIGNATURE):
        assert (bundle / name).is_file()
    assert not list(tmp_path.glob(f"{PARTIAL_PREFIX}*"))


def test_count_spreads_images_over_classes_and_report_holds_the_required_fields(private_run, tmp_path):
    bundle = run_export(private_run, tmp_path / "b", count=13).bundle_path
    report = json.loads((bundle / REPORT_JSON).read_text())
    counts = report["bundle"]["class_counts"]
    assert sum(counts.values()) == 13 and max(counts.values()) - min(counts.values()) <= 1
    config = json.loads((private_run / "config.json").read_text())
    result = json.loads((private_run / "result.json").read_text())
    assert report["config"] == config["config"] and report["plan"] == config["plan"]
    assert report["mechanisms"] == result["mechanisms"]
    assert report["guarantee"]["accountant_values"] == result["accountant_values"]
    assert report["guarantee"]["unit_of_privacy"] == "image" and report["stamp"] is None
    assert report["dataset"]["fingerprint"] == result["dataset"]["fingerprint"]
    assert report["dataset"]["num_records"] == 1500
    import hashlib

    assert report["model"]["sha256"] == hashlib.sha256((private_run / "model.pt").read_bytes()).hexdigest()
    assert set(report["software"]["export"]) >= {"dpsad_core", "torch", "cryptography", "python"}
    assert report["software"]["training"] == config["software"]
    epsilon = report["curves"]["epsilon"]["epsilon"]
    assert len(epsilon) == 4 and epsilon == sorted(epsilon)  # 2 teacher + 2 student steps, never decreasing
    assert report["signer"]["fingerprint"] == verify_bundle(bundle).signer_fingerprint
    assert report["plain_language"]["means"] and report["plain_language"]["does_not_mean"]


def test_nothing_private_leaves(private_run, tmp_path):
    from dpsad_core.data.demo import load_demo

    bundle = run_export(private_run, tmp_path / "b", per_class=5, npz=True).bundle_path
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".ckpt", ".safetensors")]
    # no teacher or discriminator weights, no per-step private metrics, no per-class counts of the private set
    config = json.loads((private_run / "config.json").read_text())
    private_counts = json.dumps(config["dataset"]["class_counts"], sort_keys=True)
    text = "\n".join(p.read_text(errors="replace") for p in files if p.suffix in (".json", ".html", ".csv"))
    for column in ("teacher_grad_norm", "student_clipped_fraction", "teacher_batch", "teacher_loss", "student_loss",
                   "disc_loss"):
        assert re.search(rf"\b{column}\b", text) is None, column
    assert private_counts not in text and str(private_run) not in text
    # no exported image equals or nearly equals a training image
    train = load_demo(split="train")
    train_pixels = np.clip(train.images[:, 0] * 255 + 0.5, 0, 255).astype(np.float32)
    with np.load(bundle / NPZ) as npz:
        exported = npz["images"].astype(np.float32)
    def nearest(images: np.ndarray) -> float:
        return float(np.abs(images[:, None] - train_pixels[None]).mean(axis=(2, 3)).min())

    # the check itself catches a copied training image, even one slightly perturbed
    planted = np.concatenate([exported, np.clip(train_pixels[123:124] + 3.0, 0, 255)])
    assert nearest(planted) <= 3.0
    distance = nearest(exported)
    assert distance > 8.0, f"an exported image is within {distance:.2f} grey levels of a training image"
    # and the signing key's private half is nowhere in the bundle
    from cryptography.hazmat.primitives import serialization

    key = signing.load_or_create_signing_key()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    for path in files:
        data = path.read_bytes()
        assert raw not in data and raw.hex().encode() not in data and b"PRIVATE KEY" not in data


def test_private_diagnostics_only_on_request_and_labelled(private_run, tmp_path):
    evaluation = {"downstream": {"cnn": {"accuracy": 0.42, "per_epoch": [0.1, 0.2]}},
                  "memorisation": {"near_copy_count": 0, "dcr_share_closer_to_training_than_holdout": 0.51,
                                   "pixel": {"closest_pairs": [[1, 2]], "threshold": 0.1}},
                  "config": {"count": 100, "path": "/secret/place"}}
    run_copy = workspace_of(private_run) / "runs" / f"{private_run.name}-eval"
    shutil.copytree(private_run, run_copy)
    (run_copy / "evaluation.json").write_text(json.dumps(evaluation))
    plain = run_export(run_copy, tmp_path / "plain", per_class=1).bundle_path
    assert json.loads((plain / REPORT_JSON).read_text())["outside_guarantee"] is None
    assert "0.42" not in (plain / REPORT_HTML).read_text()
    extra = run_export(run_copy, tmp_path / "extra", per_class=1, include_private_diagnostics=True).bundle_path
    section = json.loads((extra / REPORT_JSON).read_text())["outside_guarantee"]
    assert "OUTSIDE THE PRIVACY GUARANTEE" in section["note"]
    assert section["evaluation"] == {"downstream.cnn.accuracy": 0.42, "memorisation.near_copy_count": 0,
                                     "memorisation.dcr_share_closer_to_training_than_holdout": 0.51,
                                     "memorisation.pixel.threshold": 0.1}
    assert "teacher_loss" in section["private_losses"]["teacher"]
    html = (extra / REPORT_HTML).read_text()
    assert "Outside the privacy guarantee" in html and "0.42" in html
    assert verify_bundle(extra).ok


def test_html_report_is_self_contained(private_run, tmp_path):
    bundle = run_export(private_run, tmp_path / "b", per_class=2).bundle_path
    html = (bundle / REPORT_HTML).read_text()
    assert "data:image/png;base64," in html and "<svg" in html and "<polyline" in html
    lowered = html.lower()
    for external in ("<script", "<link", "src='http", 'src="http', "url(http", "@import"):
        assert external not in lowered, external
    result = json.loads((private_run / "result.json").read_text())
    assert f"{result['epsilon']:.4g}" in html and "What this does not mean" in html
    assert NOT_DP_STAMP not in html


def test_croissant_validates_with_mlcroissant(private_run, tmp_path):
    mlcroissant = pytest.importorskip("mlcroissant")
    bundle = run_export(private_run, tmp_path / "b", count=7, npz=True).bundle_path
    document = json.loads((bundle / CROISSANT).read_text())
    assert document["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert document["rai:hasSyntheticData"] is True
    assert "differentially private" in document["rai:personalSensitiveInformation"]
    for field in ("rai:dataCollection", "rai:dataLimitations", "rai:dataBiases", "rai:dataUseCases"):
        assert len(document[field]) > 40
    hashes = {entry["contentUrl"]: entry["sha256"] for entry in document["distribution"] if "sha256" in entry}
    manifest = dict(reversed(line.split("  ", 1)) for line in (bundle / MANIFEST).read_text().splitlines())
    assert set(hashes) == {LABELS, NPZ, GRID} and all(manifest[path] == digest for path, digest in hashes.items())
    dataset = mlcroissant.Dataset(jsonld=str(bundle / CROISSANT))
    issues = dataset.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, issues.report()
    samples = list(dataset.records(record_set="samples"))
    images = list(dataset.records(record_set="images"))
    assert len(samples) == 7 and len(images) == 7
    assert {record["images/class_folder"].decode() for record in images} <= {str(i) for i in range(10)}


def test_zip_bundle_round_trip(private_run, tmp_path):
    finished = run_export(private_run, tmp_path / "bundle.zip", per_class=1, zip=True)
    archive = finished.bundle_path
    assert archive == tmp_path / "bundle.zip" and archive.is_file()
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert all(name.startswith("bundle/") for name in names) and f"bundle/{SIGNATURE}" in names
    assert verify_bundle(archive).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.zip"]


def test_non_private_run_is_refused_without_research_and_stamped_with_it(nonprivate_run, tmp_path):
    with pytest.raises(NotPrivateError) as caught:
        export_bundle(nonprivate_run.name, workspace=workspace_of(nonprivate_run), out=tmp_path / "b", per_class=1)
    assert "--research" in str(caught.value)
    assert not any(tmp_path.iterdir())
    bundle = run_export(nonprivate_run, tmp_path / "b", per_class=1, research=True).bundle_path
    assert bundle.name == f"b-{NOT_DP_SUFFIX}"
    report = json.loads((bundle / REPORT_JSON).read_text())
    assert report["stamp"] == NOT_DP_STAMP and report["guarantee"]["epsilon"] is None
    assert report["title"].startswith(NOT_DP_STAMP)
    croissant = json.loads((bundle / CROISSANT).read_text())
    assert NOT_DP_STAMP in croissant["description"] and NOT_DP_STAMP in croissant["rai:personalSensitiveInformation"]
    assert f"<div class='stamp'>{NOT_DP_STAMP}</div>" in (bundle / REPORT_HTML).read_text()
    result = verify_bundle(bundle)
    assert result.ok and result.summary["private"] is False


def test_unfinished_run_and_existing_destination_are_refused(private_run, tmp_path):
    run_copy = workspace_of(private_run) / "runs" / f"{private_run.name}-unfinished"
    shutil.copytree(private_run, run_copy)
    status = json.loads((run_copy / "status.json").read_text())
    (run_copy / "status.json").write_text(json.dumps(dict(status, state="interrupted")))
    with pytest.raises(RunError, match="has not finished"):
        export_bundle(run_copy.name, workspace=workspace_of(private_run), out=tmp_path / "x", per_class=1)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        export_bundle(private_run.name, workspace=workspace_of(private_run), out=tmp_path / "taken", per_class=1)
    with pytest.raises(ConfigError):
        export_bundle(private_run.name, workspace=workspace_of(private_run), out=tmp_path / "y")
    with pytest.raises(ConfigError):
        export_bundle(private_run.name, workspace=workspace_of(private_run), out=tmp_path / "y", per_class=0)


@pytest.mark.parametrize("zip_it", [False, True])
def test_interrupted_export_leaves_nothing_that_looks_like_a_bundle(private_run, tmp_path, zip_it):
    out = tmp_path / ("b.zip" if zip_it else "b")
    events = export_bundle(private_run.name, workspace=workspace_of(private_run), out=out, per_class=40,
                           batch_size=100, device="cpu", zip=zip_it)
    for event in events:
        if isinstance(event, ExportProgress):
            break
    assert any(p.name.startswith(PARTIAL_PREFIX) for p in tmp_path.iterdir())  # it was writing
    events.close()
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_export_are_removed_by_the_next(private_run, tmp_path):
    import subprocess
    import sys

    from dpsad_core.export.bundle import _owner_tag

    # A kill -9 leaves the dead exporter's partial folder (and maybe its zip); a live exporter's stays.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"{PARTIAL_PREFIX}old-{_owner_tag(dead_pid)}-0123abcd"
    (stale / "images").mkdir(parents=True)
    stale_zip = tmp_path / f"{PARTIAL_PREFIX}old2-{_owner_tag(dead_pid)}-89abcdef.zip"
    stale_zip.write_bytes(b"PK")
    live = tmp_path / f"{PARTIAL_PREFIX}busy-{_owner_tag()}-00000000"
    live.mkdir()
    other_host = tmp_path / f"{PARTIAL_PREFIX}far-hffffff-p{dead_pid}-11111111"
    other_host.mkdir()
    run_export(private_run, tmp_path / "b", per_class=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", live.name, other_host.name])


def test_failure_while_signing_leaves_nothing(private_run, tmp_path, monkeypatch):
    import dpsad_core.export.bundle as bundle_module

    def broken(folder, key):
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module, "seal_folder", broken)
    with pytest.raises(OSError, match="disk full"):
        run_export(private_run, tmp_path / "b", per_class=1)
    assert list(tmp_path.iterdir()) == []


def test_html_and_svg_are_well_formed(private_run, tmp_path):
    import xml.etree.ElementTree as ET
    from html.parser import HTMLParser

    bundle = run_export(private_run, tmp_path / "b", per_class=1).bundle_path
    html = (bundle / REPORT_HTML).read_text()

    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            if tag not in ("meta", "img", "br", "rect", "circle", "polyline"):
                self.stack.append(tag)

        def handle_endtag(self, tag) -> None:
            if tag in ("rect", "circle", "polyline"):
                return
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
            self.stack.pop()

    checker = Checker()
    checker.feed(html)
    assert checker.stack == []
    start = html.index("<svg")
    ET.fromstring(html[start:html.index("</svg>", start) + len("</svg>")])


def test_report_names_the_dataset_instead_of_a_local_path():
    from dpsad_core.export.report import shareable_config
    from dpsad_core.runs import RunConfigRecord

    config = RunConfigRecord(
        config={"data": "/home/analyst/ward-7/smith_john", "public_data": "rendered-digits", "seed": 0},
        dataset={"name": "chest-xrays", "name_declared": True}, plan={}, public_dataset={"name": "rendered-digits"})
    shared = shareable_config(config)
    assert "smith_john" not in json.dumps(shared)
    assert shared["data"] == "chest-xrays"  # the name the analyst declared at import
    assert shared["public_data"] == "rendered-digits"  # a source name, not a path: kept
    assert shared["seed"] == 0
    config = dataclasses.replace(config, dataset={"name": "smith_john"})  # derived from the folder, never declared
    assert shareable_config(config)["data"] == "dataset"
