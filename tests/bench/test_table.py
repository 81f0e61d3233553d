"""The benchmark-table harness: a smoke cell runs end to end and its numbers reach the rendered table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import table  # noqa: E402 - needs the sys.path line above
import table_cells  # noqa: E402 - needs the sys.path line above


def test_every_profile_names_steps_for_every_recipe_and_known_datasets():
    for profile in table_cells.PROFILES.values():
        assert set(profile.steps) == set(table_cells.RECIPES)
        assert set(profile.datasets) <= set(table_cells.DATASETS)
    cpu = table_cells.cells("cpu")
    assert len(cpu) == 3 * 2 * len(table_cells.RECIPES)
    # Public-data recipes apply only where public data with the same classes exists.
    assert {c.cell_id for c in cpu if c.applicable()} == {
        f"{d}-eps{e:g}-{r}" for d in ("fashion-mnist", "pneumoniamnist") for e in (1, 10)
        for r in ("dpsad-public-teacher", "dpdm-public")}
    assert table_cells.find_cell("cpu", "mnist-eps10-dpdm-public").engine_recipe == "dpdm"
    with pytest.raises(SystemExit, match="no cell"):
        table_cells.find_cell("cpu", "mnist-eps3-dpdm")


@pytest.mark.slow
def test_smoke_cell_runs_and_its_numbers_reach_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DPSAD_CONFIG_DIR", str(tmp_path / "config"))
    results = tmp_path / "results"
    assert table.main(["run", "--profile", "smoke", "--cell", "demo-eps1-dpdm", "--results", str(results),
                       "--workspace", str(tmp_path / "ws")]) == 0
    record = json.loads((results / "smoke" / "demo-eps1-dpdm.json").read_text())
    assert record["private"] and record["epsilon"] <= 1.0 and record["delta"] == 1e-5
    assert 0 <= record["cnn_accuracy"] <= 1 and record["frechet_distance"] > 0
    assert record["synthetic_count"] == 50 and record["compute"]["train_minutes"] > 0
    assert record["command"] == "python bench/table.py run --profile smoke --cell demo-eps1-dpdm"
    assert [(m["part"], m["steps"]) for m in record["mechanisms"]] == [("denoiser", 3)]  # the smoke profile's steps

    rendered = table.render_table("smoke", table.load_results(results, "smoke"))
    row = next(line for line in rendered.splitlines() if "`demo-eps1-dpdm`" in line)
    assert f"**{record['cnn_accuracy']:.3f}**" in row and f"{record['epsilon']:.2f}" in row
    assert ("| demo | 10 | not run yet: dpsad, dpsad-split, dpsad-public-teacher, dpdm, dpdm-public, dpsad-paper |"
            in rendered)
    assert "| demo | 1 | not run yet: dpsad, dpsad-split, dpsad-public-teacher, dpdm-public, dpsad-paper |" in rendered

    assert table.main(["reference", "--profile", "smoke", "--results", str(results)]) == 0
    reference = json.loads((results / "smoke" / "reference-demo.json").read_text())
    assert reference["records"] == 50 and 0 <= reference["cnn_accuracy"] <= 1  # 5 real images per class
    with_reference = table.render_table("smoke", table.load_results(results, "smoke"))
    assert (f"| demo | 1 | reference: the same classifiers on 50 real training images | none (real data) | "
            f"{reference['cnn_accuracy']:.3f} |") in with_reference

    docs = tmp_path / "benchmarks.md"
    docs.write_text("before\n<!-- table:smoke -->\nold\n<!-- /table:smoke -->\nafter\n")
    table.write_docs("smoke", rendered, docs)
    text = docs.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text and row in text


@pytest.mark.slow
def test_a_student_cell_compares_the_student_with_its_own_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv("DPSAD_CONFIG_DIR", str(tmp_path / "config"))
    results = tmp_path / "results"
    assert table.main(["run", "--profile", "smoke", "--cell", "demo-eps10-dpsad", "--results", str(results),
                       "--workspace", str(tmp_path / "ws")]) == 0
    record = json.loads((results / "smoke" / "demo-eps10-dpsad.json").read_text())
    comparison = record["student_vs_teacher"]
    assert comparison["student"]["generator"] == "few-step student" and comparison["student"]["sample_steps"] == 4
    assert comparison["teacher"]["generator"] == "teacher" and comparison["teacher"]["sample_steps"] == 5
    assert comparison["student"]["cnn_accuracy"] == record["cnn_accuracy"]
    # Minutes, rounded to 0.01: a smoke student can take under 0.3 s, so only the type and sign are certain.
    assert isinstance(comparison["student_train_minutes"], float) and comparison["student_train_minutes"] >= 0
    rendered = table.render_student_table("smoke", table.load_results(results, "smoke"))
    rows = [line for line in rendered.splitlines() if "`demo-eps10-dpsad`" in line]
    assert len(rows) == 2 and "few-step student | 4 |" in rows[0] and "teacher | 5 |" in rows[1]
    assert "| demo | 1 | not run yet |" in rendered


def test_published_rows_follow_each_group():
    rendered = table.render_table("cpu", {})
    lines = rendered.splitlines()
    first_published = next(i for i, line in enumerate(lines) if "published: DP-SAD" in line)
    assert lines[first_published - 1].startswith("| mnist | 1 | not run yet: dpsad, ")
    assert "| mnist | 10 | published: DPDM (accuracy-tuned) | 10 | 0.981 |" in rendered
    assert "pneumoniamnist | 1 | published" not in rendered
    assert ("| fashion-mnist | 10 | n/a (no public data with the same classes): dpsad-public-teacher, "
            "dpdm-public |") in rendered


# Training records of the shared datasets (../shared/data/README.md) and of the rendered public digits.
_PRIVATE_UNITS = {"mnist": 60_000, "fashion-mnist": 60_000, "pneumoniamnist": 4_708}


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_applicable_cell_has_a_valid_plan(profile):
    """A session with the machine for a profile can start every cell: each plans within its epsilon.

    Planned with RDP (fast); the cells calibrate with PRV, which only lowers the noise for the same target.
    """
    import dataclasses

    from dpsad_core.training.planner import plan_training

    checked = 0
    for cell in table_cells.cells(profile):
        if cell.applicable() is not None:
            continue
        config = table.cell_config(cell, seed=0, device="cpu")
        plan = plan_training(recipe=config.recipe, hyper=dataclasses.replace(config.hyper, accountant="rdp"),
                             epsilon=cell.epsilon, delta=config.delta, private_units=_PRIVATE_UNITS[cell.dataset],
                             public_records=10_000 if config.public_data else 0)
        expected = table_cells.PROFILES[profile].steps[cell.recipe]
        # Steps on the private data (the free distillation is post-processing, sized by the preset).
        steps = {phase.name: phase.steps for phase in plan.phases if phase.privacy != "postprocess"}
        assert sum(steps.values()) == sum(expected.values()), cell.cell_id
        if cell.recipe == "dpsad-paper":
            assert plan.nonprivate_parts, cell.cell_id
        else:
            assert not plan.nonprivate_parts and plan.planned_epsilon["rdp"] <= cell.epsilon * 1.0001, cell.cell_id
            assert all(phase.noise_multiplier > 0 for phase in plan.phases if phase.privacy == "dp"), cell.cell_id
        checked += 1
    assert checked == 28
