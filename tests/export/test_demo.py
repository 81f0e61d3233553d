"""``dpsad-core demo`` ends by exporting a bundle from the demo run and verifying it (issue 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpsad_core.cli import main
from dpsad_core.export.verify import verify_bundle

pytestmark = pytest.mark.slow


def test_demo_exports_and_verifies_a_bundle(workspace, capsys):
    assert main(["demo", "--preset", "tiny", "--json"]) == 0
    stdout = capsys.readouterr().out
    result = json.loads(stdout.strip().splitlines()[-1])
    bundle = Path(result["bundle"])
    assert result["bundle_verified"] is True and result["bundle_problems"] == []
    assert bundle.parent == workspace / "exports" and bundle.name == result["run_id"]
    verified = verify_bundle(bundle)
    assert verified.ok and verified.summary["epsilon"] == pytest.approx(result["epsilon"])
    assert verified.summary["images"] == 100
    report = json.loads((bundle / "privacy-report.json").read_text())
    # the demo's teacher trains on generated (public) digits: its loss curve may be shown
    assert "teacher" in report["curves"]["public_losses"]
    assert report["public_dataset"]["source"] == "rendered-digits"
