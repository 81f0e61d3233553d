"""Words for the analyst and the officer: plain text where epsilon is chosen, exact values behind Details."""

from __future__ import annotations

import html
import re

DEVELOPER_WORDS = re.compile(r"σ|sigma|RDP|PRV|sample rate|min\(1e-5|private: True|clip norm|docs/|dpsad-core |"
                             r"DataImport error|Config error|amplification by subsampling|--[a-z]")


def fake_preview() -> dict:
    phase = {"name": "denoiser", "kind": "denoise", "privacy": "dp", "data": "private", "steps": 400,
             "expected_batch_size": 256.0, "sample_rate": 0.1707, "noise_multiplier": 1.876,
             "model_noise_multiplier": 1.876, "disc_noise_multiplier": 0.0, "disc_private": False}
    return {"plan": {"phases": [phase], "planned_epsilon": {"rdp": 9.1, "prv": 7.9, "certified": 7.9},
                     "epsilon_target": 8.0, "delta": 1e-5},
            "dataset": {"name": "xrays", "num_records": 1500, "num_privacy_units": 1500, "unit": "image",
                        "num_classes": 2, "resolution": 28, "channels": 1},
            "steps": {"denoiser": 400}, "warnings": [], "private": True,
            "raw_warnings": ["denoiser: expected batch 256 >= 200 records, so every record is in every batch "
                             "(sample rate 1): there is no amplification by subsampling"],
            "estimate": {"seconds": 300.0, "basis": "measured"}, "budget": None}


def test_the_plan_speaks_plainly_and_keeps_exact_values_behind_details(window):
    from dpsad_workbench.screens.new_run import render_plan, render_plan_details

    result = fake_preview()
    plain = render_plan(result)
    assert not DEVELOPER_WORDS.search(plain), DEVELOPER_WORDS.search(plain)
    assert "epsilon 7.9" in plain and "1,500 images protected" in plain
    details = render_plan_details(result)
    assert "1.876" in details and "0.1707" in details and "rdp 9.1" in details and "no amplification" in details
    screen = window.new_run
    screen._on_plan(screen._generation, result)
    assert screen.details_text.isHidden()
    screen.details_button.click()
    assert not screen.details_text.isHidden() and "1.876" in screen.details_text.text()


def test_the_form_explains_epsilon_where_it_is_chosen(window):
    screen = window.new_run
    screen.epsilon.setText("1")
    assert "at most 2.7 times more or less likely" in screen.guarantee.text()
    screen.epsilon.setText("8")
    assert "at most about 3,000 times" in screen.guarantee.text()  # not "2.98e+03"
    assert not DEVELOPER_WORDS.search(screen.delta.placeholderText())
    from dpsad_workbench.screens.new_run import RECIPES

    assert not any(DEVELOPER_WORDS.search(text) for text in RECIPES.values())
    screen.guarantee_button.click()
    box = screen.guarantee_box
    assert box is not None and box.isVisible()
    assert "What this guarantee means" in box.text() and "What it does not mean" in box.text()
    box.close()


def test_error_dialogs_use_analyst_titles_and_the_apps_own_field_names():
    from dpsad_core.errors import ConfigError, DataImportError, PrivacyBudgetError, TooFewRecordsError
    from dpsad_workbench.dialogs import describe_error

    errors = [ConfigError("the dpsad-public-teacher recipe needs a public dataset", field="public_data",
                          remedy="pass --public-data PATH with data you are allowed to treat as public"),
              DataImportError("unreadable image", path="/data/x.png", remedy="remove it"),
              TooFewRecordsError("only 20 images: at least 100 are needed", remedy="lower it with --min-records 20"),
              PrivacyBudgetError("over the cap", remedy="raise the cap with: dpsad-core ledger xrays --cap EPSILON")]
    described = [describe_error(error) for error in errors]
    for title, text, details in described:
        assert not DEVELOPER_WORDS.search(title + text), (title, text)
        assert details == ""
    assert [title for title, _, _ in described] == ["A setting needs changing", "The data cannot be read",
                                                    "Too few records", "Over the privacy budget"]
    assert "'Fewest units' 20" in described[2][1] and "Datasets screen" in described[3][1]


def test_verification_and_report_speak_plainly_with_details(window):
    from types import SimpleNamespace

    from dpsad_workbench.screens.export import render_report, render_report_details, render_verification

    verdict = render_verification(SimpleNamespace(ok=True, key_pinned=True, problems=(), signer_fingerprint="sha256:ab",
                                                  summary={"private": True, "epsilon": 6.32, "delta": 1e-5,
                                                           "recipe": "dpdm"}))
    assert "differentially private: yes" in verdict and not DEVELOPER_WORDS.search(verdict)
    result = {"run_id": "r1", "recipe": "dpdm", "private": True, "epsilon": 6.32, "delta": 1e-5,
              "unit_of_privacy": "image", "dataset": {"name": "xrays", "num_units": 1500},
              "accountant_values": {"rdp": 6.5, "prv": 6.32},
              "mechanisms": [{"part": "denoiser", "noise_multiplier": 1.876, "sample_rate": 0.17, "steps": 400}]}
    from dpsad_core.runs.records import RunConfigRecord, RunResult

    result = RunResult.from_dict(dict(result, dataset={"name": "xrays", "num_units": 1500, "num_records": 1500,
                                                       "fingerprint": "f" * 16}))
    config = {"dataset": {"name": "xrays", "name_declared": True},
              "plan": {"units_from": "noisy count", "private_units": 1400, "count_mechanism": {"noise_multiplier": 80}}}
    report = render_report(result, RunConfigRecord.from_dict(config))
    # The size as the bundle states it: the noisy count; the exact 1500 stays on this machine.
    assert "about 1400 privacy units" in report and "1500" not in report
    undeclared = render_report(result, RunConfigRecord.from_dict(dict(config, dataset={"name": "ward-7-scans"})))
    assert "dataset: dataset (" in undeclared and "ward-7-scans, stays on this machine" in undeclared
    assert not DEVELOPER_WORDS.search(report), DEVELOPER_WORDS.search(report)
    assert "What this guarantee means" in report
    assert "1.876" in render_report_details(result) and "rdp 6.5" in render_report_details(result)


def test_planner_warnings_are_reworded(workspace):
    from dpsad_workbench.core import analyst_warning

    raw = ("student: expected batch 64 >= 50 records, so every record is in every batch (sample rate 1): "
           "there is no amplification by subsampling")
    reworded = analyst_warning(raw)
    assert "smaller than one training batch" in reworded and not DEVELOPER_WORDS.search(reworded)


def test_the_time_line_says_where_the_time_comes_from_without_the_measurement(window):
    """Batches and denoising steps are the estimator's words: the plan says timed or learnt from a run, and when."""
    from dpsad_workbench.screens.new_run import render_plan, render_plan_details

    result = fake_preview()
    basis = ("one step of this model at a batch of 256, measured on this machine's cpu (from a run 3 h ago): "
             "1.20 s per denoising step; samples and checkpoints add a little")
    result["estimate"] = {"seconds": 300.0, "phases": {"denoiser": 300.0}, "source": "run",
                          "age_seconds": 3 * 3600.0, "basis": basis}
    plain = render_plan(result)
    assert "Estimated time: about 5 min 00 s (from the speed of a run on this computer 3 h 00 min ago" in plain
    assert "batch" not in plain and "denoising" not in plain
    assert html.escape(basis) in render_plan_details(result)
    result["estimate"] |= {"source": "timed", "age_seconds": 5.0}
    assert "(a training step timed on this computer just now; each finished run updates it)" in render_plan(result)
