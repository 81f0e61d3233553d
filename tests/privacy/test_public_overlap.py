"""Public data that holds private records is refused in one line: --public-data, rdm train-public, --example images.

The research override keeps the run going but stamps it NOT differentially private.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dpsad_core.cli import main
from dpsad_core.data import resolve_data_source
from dpsad_core.data.public_overlap import OVERLAP_PART
from dpsad_core.errors import NotPrivateError
from dpsad_core.training import TrainConfig, prepare_run
from tests.fixtures.rdm import INDEX, MODEL
from tests.privacy.test_ledger_overlap import import_as, write_digits


@pytest.fixture
def private(tmp_path, workspace, capsys):
    """Dataset 'private': 120 digits imported at 16 px from 32 px PNGs listed in a manifest."""
    path = write_digits(tmp_path / "private", range(120))
    import_as(capsys, path, "private", "--resolution", "16")
    return path


def test_the_private_set_as_public_data_is_refused_at_plan_time(private, workspace, capsys):
    # The same files, resized by the import's own resizer to the private data's 16 px.
    code = main(["train", "--data", "private", "--public-data", str(private), "--preset", "tiny", "--plan",
                 "--min-records", "0"])
    err = capsys.readouterr().err
    assert code == 5 and err.count("\n") == 1
    assert "is not public: 120 of its 120 records are identical to private records" in err
    assert "'private'" in err and "--allow-public-overlap" in err


@pytest.mark.parametrize("public", ["private", "subset", "resized"])
def test_overlapping_public_data_is_refused_and_the_override_stamps_the_run_not_private(
        tmp_path, private, workspace, capsys, public):
    if public == "subset":
        spec = str(write_digits(tmp_path / "some", range(30, 40)))
    elif public == "resized":  # the private records at another size, saved under another name
        import_as(capsys, write_digits(tmp_path / "big", range(120), size=40), "big", "--resolution", "28")
        spec = "big"
    else:
        spec = "private"
    config = dict(data="private", recipe="dpdm", public_data=spec, preset="tiny", min_records=0)
    with pytest.raises(NotPrivateError, match="is not public"):
        prepare_run(TrainConfig(**config), workspace=workspace)
    _, _, plan = prepare_run(TrainConfig(**config, allow_public_overlap=True), workspace=workspace)
    assert OVERLAP_PART in plan.nonprivate_parts and not plan.is_private


def test_genuinely_public_data_is_accepted(tmp_path, private, workspace):
    other = str(write_digits(tmp_path / "other", range(600, 720)))
    _, _, plan = prepare_run(TrainConfig(data="private", recipe="dpdm", public_data=other, preset="tiny",
                                         min_records=0), workspace=workspace)
    assert plan.is_private


def test_rdm_train_public_on_the_private_set_is_refused(private, workspace, capsys):
    code = main(["rdm", "train-public", "--public", "private", "--name", "leaky", "--preset", "tiny",
                 "--min-records", "0"])
    err = capsys.readouterr().err
    assert code == 5 and err.count("\n") == 1
    assert "'private' is not public: it shares records with private data in this workspace: private" in err
    assert not (workspace / "rdm").exists() or not any((workspace / "rdm").rglob("leaky"))


def test_a_private_image_as_example_query_is_refused(rdm_workspace, tmp_path, capsys):
    private = resolve_data_source("private", workspace=rdm_workspace, min_records=0)
    path = tmp_path / "query.png"
    Image.fromarray(np.rint(private.images[5, 0] * 255).astype(np.uint8)).save(path)
    code = main(["rdm", "generate", "--model", MODEL, "--index", INDEX, "--epsilon", "10", "--example", str(path),
                 "--sigma", "0.3", "--k", "5", "--q", "0.1", "--steps", "3"])
    err = capsys.readouterr().err
    assert code == 5 and err.count("\n") == 1
    assert "1 of the 1 example image(s) are private records of the index" in err and "--allow-public-overlap" in err
    assert not (rdm_workspace / "runs").exists() or not any((rdm_workspace / "runs").iterdir())


def test_indexing_private_data_a_public_model_was_trained_on_is_refused(tmp_path, workspace, capsys):
    # The model is trained first, on files nobody had imported as private yet; they are imported as private later.
    path = write_digits(tmp_path / "late", range(120))
    assert main(["rdm", "train-public", "--public", str(path), "--name", "early-model", "--preset", "tiny",
                 "--resolution", "16", "--min-records", "0"]) == 0, capsys.readouterr().err
    import_as(capsys, path, "late", "--resolution", "16")
    code = main(["rdm", "index", "--model", "early-model", "--data", "late", "--min-records", "0"])
    err = capsys.readouterr().err
    assert code == 5 and err.count("\n") == 1
    assert "'late' is not private from public model 'early-model': 120 of its 120 records are identical" in err


def test_the_gui_plan_refuses_the_private_set_as_public_data_and_shows_overlaps(tmp_path, private, workspace, capsys):
    core = pytest.importorskip("dpsad_workbench.core")  # the GUI's calls into the core (no Qt needed)
    config = TrainConfig(data="private", recipe="dpsad-public-teacher", public_data="private", preset="tiny",
                         min_records=0)
    with pytest.raises(NotPrivateError, match="is not public: 120 of its 120 records"):
        core.plan_preview(config, workspace=workspace)
    import_as(capsys, write_digits(tmp_path / "copy", range(50)), "copy", "--resolution", "16")
    fingerprint = resolve_data_source("private", workspace=workspace, min_records=0).fingerprint(workspace)
    assert [overlap["name"] for overlap in core.budget_summary(workspace, fingerprint)["overlaps"]] == ["copy"]
