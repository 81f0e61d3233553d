"""Nothing local in a bundle: no path, folder or file name, or user name in any file of any export path.

The private data lives in a folder named like a clinical study (``ward7-jsmith-study``) with files named after a
patient, imported without ``--name``; the public data likewise. Every file of a training-run bundle, a research
(not private) bundle and a DP-RDM bundle is scanned, bytes and text, for all of those names.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpsad_core.cli import main
from dpsad_core.data import load_demo

PRIVATE_FOLDER = "ward7-jsmith-study"
PUBLIC_FOLDER = "ward9-adoe-public"
FILE_STEM = "jsmith-scan"
CLASSES = ("0", "1")  # the built-in class names of digits: public


def write_folder(root: Path, rows: range, stem: str) -> Path:
    demo = load_demo(resolution=16)
    for row in rows:
        label = int(demo.labels[row])
        if label > 1:
            continue
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(demo.images[row, 0] * 255).astype(np.uint8)).save(folder / f"{stem}-{row:04d}.png")
    return root


def forbidden(workspace: Path, *folders: Path) -> list[str]:
    words = [str(workspace), workspace.name, PRIVATE_FOLDER, PUBLIC_FOLDER, FILE_STEM, "jsmith", "adoe", "ward7",
             "ward9"]
    words += [str(folder) for folder in folders] + [str(folder.parent) for folder in folders]
    user = getpass.getuser()
    if len(user) >= 5:  # a short user name ("root") is also an ordinary word
        words.append(user)
    return words


def scan(bundle: Path, words: list[str]) -> list[str]:
    found = []
    files = [path for path in bundle.rglob("*") if path.is_file()]
    assert len(files) > 5
    for path in files:
        relative = str(path.relative_to(bundle))
        text = path.read_bytes().decode("latin-1")
        found += [f"{relative}: {word!r}" for word in words if word in text or word in relative]
    return found


def train(capsys, *args: str) -> str:
    code = main(["train", *args, "--preset", "tiny", "--max-steps", "2", "--device", "cpu", "--min-records", "0",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])["run_id"]


@pytest.fixture
def local_data(tmp_path, workspace, capsys):
    private = write_folder(tmp_path / PRIVATE_FOLDER, range(0, 600), FILE_STEM)
    public = write_folder(tmp_path / PUBLIC_FOLDER, range(900, 1500), "adoe-img")
    for folder, extra in ((private, []), (public, ["--public"])):  # no --name: the names derive from the folders
        assert main(["import", str(folder), "--min-records", "0", "--classes", ",".join(CLASSES), *extra]) == 0, \
            capsys.readouterr().err
    capsys.readouterr()
    return private, public


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["train", "research"])
def test_a_training_bundle_names_nothing_local(tmp_path, workspace, capsys, local_data, kind):
    private, public = local_data
    if kind == "train":
        run_id = train(capsys, "--data", str(private), "--recipe", "dpdm", "--public-data", PUBLIC_FOLDER)
    else:
        run_id = train(capsys, "--data", PRIVATE_FOLDER, "--recipe", "dpsad-paper")
    out = tmp_path / "bundle"
    extra = ["--research"] if kind == "research" else []
    assert main(["export", run_id, "--out", str(out), "--per-class", "2", "--npz", "--device", "cpu", *extra]) == 0, \
        capsys.readouterr().err
    (out,) = tmp_path.glob("bundle*")  # a research bundle's folder name says NOT-DIFFERENTIALLY-PRIVATE
    assert scan(out, forbidden(workspace, private, public)) == []
    assert '"name": "dataset"' in (out / "privacy-report.json").read_text()


@pytest.mark.slow
def test_a_dp_rdm_bundle_names_nothing_local(tmp_path, workspace, capsys, local_data):
    private, public = local_data
    example = tmp_path / f"{FILE_STEM}-query.png"
    Image.fromarray((np.eye(16) * 255).astype(np.uint8)).save(example)
    assert main(["rdm", "train-public", "--public", str(public), "--name", "pub-model", "--preset", "tiny",
                 "--min-records", "0"]) == 0, capsys.readouterr().err
    assert main(["rdm", "index", "--model", "pub-model", "--data", str(private), "--min-records", "0"]) == 0, \
        capsys.readouterr().err
    capsys.readouterr()
    index = next(path.name for path in (workspace / "rdm" / "indexes").iterdir())
    assert main(["rdm", "generate", "--model", "pub-model", "--index", index, "--epsilon", "10", "--per-class", "1",
                 "--example", str(example), "--k", "3", "--q", "0.05", "--sigma", "2", "--steps", "2",
                 "--json"]) == 0
    import json

    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    out = tmp_path / "rdm-bundle"
    assert main(["export", run_id, "--out", str(out), "--npz"]) == 0, capsys.readouterr().err
    assert scan(out, forbidden(workspace, private, public, example)) == []
