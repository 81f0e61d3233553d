"""Export of a DP-RDM run: its generated images, never new ones, through the same signed bundle and report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from dpsad_core.cli import main
from dpsad_core.errors import ConfigError
from dpsad_core.export.bundle import export_bundle
from dpsad_core.export.layout import CROISSANT, LABELS, NPZ, REPORT_HTML, REPORT_JSON
from dpsad_core.export.verify import verify_bundle
from dpsad_core.rdm.generation import GenerateConfig, generate_rdm
from tests.fixtures.rdm import INDEX, MODEL


@pytest.fixture
def rdm_run(rdm_workspace, tmp_path):
    """A finished DP-RDM run: 2 class queries for each of the 10 digits and 2 example queries (22 images)."""
    example = tmp_path / "public-example.png"
    Image.fromarray((np.eye(16) * 255).astype(np.uint8)).save(example)
    config = GenerateConfig(model=MODEL, index=INDEX, epsilon=10.0, k=5, sample_rate=0.1, sigma=0.3, per_class=2,
                            sample_steps=3, seed=0, examples=(str(example),), per_example=2)
    events = list(generate_rdm(config, workspace=rdm_workspace))
    return rdm_workspace / "runs" / events[-1].result["run_id"]


def _export(run_dir, out, **options):
    events = list(export_bundle(run_dir.name, workspace=run_dir.parent.parent, out=out, **options))
    return events[-1].bundle_path


@pytest.mark.slow
def test_a_dp_rdm_run_exports_its_own_images_with_a_report_naming_the_mechanism(rdm_run, tmp_path):
    result = json.loads((rdm_run / "result.json").read_text())
    bundle = _export(rdm_run, tmp_path / "bundle", npz=True)
    verified = verify_bundle(bundle)
    assert verified.ok, verified.problems
    assert verified.summary["recipe"] == "dp-rdm" and verified.summary["images"] == 22
    # Every image is one the run generated (no new image, which would cost privacy), in the run's order.
    generated = np.load(rdm_run / "samples.npz")
    with open(bundle / LABELS, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["label"]) for row in rows] == list(generated["labels"])
    for row, image in zip(rows, generated["images"], strict=True):
        assert np.array_equal(np.asarray(Image.open(bundle / row["file_name"])), image)
    examples = [row for row in rows if row["label"] == "-1"]
    assert len(examples) == 2 and all(row["file_name"].startswith("images/example-queries/") for row in examples)
    assert np.array_equal(np.load(bundle / NPZ)["images"], generated["images"])

    report = json.loads((bundle / REPORT_JSON).read_text())
    assert report["guarantee"]["epsilon"] == pytest.approx(result["epsilon"])
    mechanism = report["mechanism"]
    assert "DP-RDM" in mechanism["name"]
    assert (mechanism["k"], mechanism["q"], mechanism["sigma"], mechanism["lambda"]) == (5, 0.1, 0.3, 1.0)
    assert mechanism["noise_multiplier"] == pytest.approx(0.3 * 5 / 2)
    assert mechanism["sensitivity"] == pytest.approx(2 / 5) and mechanism["queries"] == 22
    assert mechanism["public_model"] == MODEL and mechanism["public_dataset"] == "public"
    # No private model exists: the model entry names the public model instead of a hash.
    assert report["model"]["sha256"] is None and report["model"]["public_model"] == MODEL
    assert report["model"]["encoder_digest"] == result["public_model"]["encoder_digest"]
    means, does_not = " ".join(report["plain_language"]["means"]), " ".join(report["plain_language"]["does_not_mean"])
    assert "never trained on" in means and "retrieval of every one of the 22 queries" in means
    assert "public model" in does_not and "example query images" in does_not
    assert report["bundle"]["images_in_run"] == 22 and report["bundle"]["subset"] == "all"
    assert report["config"]["examples"] == ["example 1"]  # neither its local path nor its file name is shared
    assert str(tmp_path) not in (bundle / REPORT_JSON).read_text()
    html = (bundle / REPORT_HTML).read_text()
    assert "DP-RDM" in html and "sigma * k / 2 = 0.3 * 5 / 2 = 0.75" in html and "2 / k = 2 / 5" in html
    croissant = json.loads((bundle / CROISSANT).read_text())
    assert "DP-RDM" in croissant["description"] and "never trained on" in croissant["rai:dataCollection"]

    # Tampering still fails verification.
    first = bundle / rows[0]["file_name"]
    first.write_bytes(first.read_bytes() + b"x")
    tampered = verify_bundle(bundle)
    assert not tampered.ok and any(rows[0]["file_name"] in problem for problem in tampered.problems)


@pytest.mark.slow
def test_a_subset_is_seeded_and_never_more_than_the_run_made(rdm_run, tmp_path, capsys):
    first = _export(rdm_run, tmp_path / "a", count=12, seed=3)
    again = _export(rdm_run, tmp_path / "b", count=12, seed=3)
    assert verify_bundle(first).ok
    labels_a, labels_b = (first / LABELS).read_text(), (again / LABELS).read_text()
    assert labels_a == labels_b and len(labels_a.splitlines()) == 13  # header + 12
    chosen = [int(row.split(",")[1]) for row in labels_a.splitlines()[1:]]
    assert max(chosen.count(label) for label in set(chosen)) == 2  # spread: 11 groups, 12 images
    report = json.loads((first / REPORT_JSON).read_text())
    assert report["bundle"]["images"] == 12 and "seed 3" in report["bundle"]["subset"]

    with pytest.raises(ConfigError, match="more than the 22 images"):
        export_bundle(rdm_run.name, workspace=rdm_run.parent.parent, out=tmp_path / "c", count=23)
    with pytest.raises(ConfigError, match=r"'0': 2"):
        export_bundle(rdm_run.name, workspace=rdm_run.parent.parent, out=tmp_path / "d", per_class=3)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
    # The CLI: one clear line, the ConfigError exit code; without --count the whole run is exported.
    capsys.readouterr()
    code = main(["export", rdm_run.name, "--count", "100", "--out", str(tmp_path / "e"),
                 "--workspace", str(rdm_run.parent.parent)])
    err = capsys.readouterr().err
    assert code == 2 and "22 images" in err
    code = main(["export", rdm_run.name, "--out", str(tmp_path / "f"), "--workspace", str(rdm_run.parent.parent),
                 "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 22
