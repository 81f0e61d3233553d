"""A dpsad run exports from its few-step student or from its DP teacher; the report says which one made the images."""

from __future__ import annotations

import json

import pytest

from dpsad_core.export.bundle import export_bundle
from dpsad_core.export.layout import REPORT_JSON
from tests.export.conftest import workspace_of

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("generator", ["release", "teacher"])
def test_the_report_names_the_network_that_made_the_images(few_step_run, tmp_path, generator):
    out = tmp_path / generator
    list(export_bundle(few_step_run.name, workspace=workspace_of(few_step_run), out=out, per_class=1,
                       device="cpu", generator=generator))
    report = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
    means = " ".join(report["plain_language"]["means"])
    assert report["bundle"]["generator"] == {"release": "few-step student", "teacher": "teacher"}[generator]
    if generator == "release":
        assert "fast 'student' generator" in means and "DDIM" not in means
    else:  # the teacher's own images: the report must not say a student made them
        assert "fast 'student' generator" not in means and "come from the privately trained teacher itself" in means
