"""``export`` and ``sample --nproc 2``: two gloo workers on the CPU give the one-process images, byte for byte.

The workers are real processes started through torch's elastic launcher (127.0.0.1, a free port), on
the tiny run of the demo digits; 300 images are three sampling blocks, so both workers sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpsad_core.sampling import SAMPLING_BLOCK
from tests.export.conftest import workspace_of

pytestmark = pytest.mark.slow
COUNT = 300


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dpsad_core", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def export(run: Path, out: Path, nproc: int) -> subprocess.CompletedProcess:
    return cli("export", run.name, "--count", COUNT, "--out", out, "--workspace", workspace_of(run), "--device", "cpu",
               "--seed", "4", "--npz", "--nproc", nproc, "--json")


def image_files(bundle: Path) -> dict[str, bytes]:
    return {path.relative_to(bundle).as_posix(): path.read_bytes() for path in sorted((bundle / "images").rglob("*"))
            if path.is_file()}


def test_an_export_with_two_workers_equals_the_one_process_export(private_run, tmp_path):
    assert COUNT > 2 * SAMPLING_BLOCK  # three blocks: the second worker has work
    one, two = tmp_path / "one", tmp_path / "two"
    done_one, done_two = export(private_run, one, 1), export(private_run, two, 2)
    assert done_one.returncode == 0, done_one.stderr
    assert done_two.returncode == 0, done_two.stderr
    summary = json.loads(done_two.stdout.strip().splitlines()[-1])
    assert summary["images"] == COUNT and Path(summary["bundle"]) == two
    files_one, files_two = image_files(one), image_files(two)
    assert len(files_one) == COUNT
    assert files_one == files_two
    assert (one / "labels.csv").read_bytes() == (two / "labels.csv").read_bytes()
    with np.load(one / "samples.npz") as a, np.load(two / "samples.npz") as b:
        assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["labels"], b["labels"])
        assert len(np.unique(a["images"].reshape(COUNT, -1), axis=0)) == COUNT  # every image its own
    assert cli("verify", two).returncode == 0


def test_sample_with_two_workers_equals_one_process(private_run, tmp_path):
    grids = []
    for nproc in (1, 2):
        npz, grid = tmp_path / f"{nproc}.npz", tmp_path / f"{nproc}.png"
        done = cli("sample", private_run.name, "--per-class", "30", "--out", grid, "--npz", npz, "--workspace",
                   workspace_of(private_run), "--device", "cpu", "--nproc", nproc)
        assert done.returncode == 0, done.stderr
        with np.load(npz) as data:
            grids.append(data["images"])
        assert grid.is_file()
    assert grids[0].shape[0] == 300 and np.array_equal(grids[0], grids[1])


def test_an_error_on_rank_0_ends_every_worker_with_its_own_exit_code(private_run, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    done = export(private_run, taken, 2)
    assert done.returncode == 2, done.stderr
    assert "already exists" in done.stderr and "Traceback" not in done.stderr
