"""End to end: a tiny run, then ``dpsad-core evaluate`` stores evaluation.json with every section."""

from __future__ import annotations

import json

import pytest

from dpsad_core.cli import main
from dpsad_core.evaluation.report import CLOSEST_PAIRS_FILE, EVALUATION_FILE, headline, read_evaluation


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # One run for the module. Fingerprints are keyed per installation (the config dir), so each
    # test below uses the config dir the run was trained under.
    workspace, config = tmp_path_factory.mktemp("eval-workspace"), tmp_path_factory.mktemp("eval-config")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DPSAD_CONFIG_DIR", str(config))
        code = main(["train", "--data", "demo", "--preset", "tiny", "--max-steps", "3", "--workspace",
                     str(workspace), "--json"])
    assert code == 0
    (run_dir,) = (workspace / "runs").iterdir()
    return workspace, run_dir, config


@pytest.fixture
def tiny_run(trained, monkeypatch):
    workspace, run_dir, config = trained
    monkeypatch.setenv("DPSAD_CONFIG_DIR", str(config))
    return workspace, run_dir


@pytest.mark.slow
def test_evaluate_writes_every_section(tiny_run, capsys):
    workspace, run_dir = tiny_run
    capsys.readouterr()
    code = main(["evaluate", run_dir.name, "--test", "demo", "--per-class", "5", "--epochs", "2",
                 "--workspace", str(workspace), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = read_evaluation(run_dir)
    assert stored == json.loads((run_dir / EVALUATION_FILE).read_text()) and printed["run_id"] == run_dir.name
    assert {"downstream", "fidelity", "memorisation", "config", "computed"} <= set(stored)
    assert 0 <= stored["downstream"]["cnn"]["accuracy"] <= 1
    assert "synthetic" in stored["downstream"]["logistic"]["selection"]
    assert stored["fidelity"]["fid"] is None and stored["fidelity"]["frechet_distance_classifier_features"] >= 0
    assert set(stored["fidelity"]["per_class"]) == {str(i) for i in range(10)}
    assert stored["memorisation"]["n"] == 50 and (run_dir / CLOSEST_PAIRS_FILE).is_file()
    assert stored["config"]["test_set"]["num_records"] == 297
    # 45 training images in batches of 16: 3 steps per epoch, so the 1,500-step minimum means 500 epochs.
    assert stored["config"]["cnn_min_steps"] == 1500 and stored["downstream"]["cnn"]["epochs"] == 500
    assert "WITHOUT differential privacy" in stored["privacy_note"]
    assert headline(stored)["synthetic_count"] == 50
    # The feature classifier is cached per training-data fingerprint: a second evaluation reuses it.
    assert stored["fidelity"]["feature_extractor"]["loaded_from_cache"] is False
    assert main(["evaluate", run_dir.name, "--test", "demo", "--count", "20", "--epochs", "1", "--min-steps", "0",
                 "--workspace", str(workspace)]) == 0
    again = read_evaluation(run_dir)
    assert again["fidelity"]["feature_extractor"]["loaded_from_cache"] is True
    assert again["memorisation"]["n"] == 20
    assert "near-copies flagged" in capsys.readouterr().out


@pytest.mark.slow
def test_user_mistakes_are_one_line_errors(tiny_run, capsys):
    workspace, run_dir = tiny_run
    assert main(["evaluate", "no-such-run", "--test", "demo", "--workspace", str(workspace)]) == 6
    assert main(["evaluate", run_dir.name, "--test", "/no/such/data", "--workspace", str(workspace)]) == 3
    assert main(["evaluate", run_dir.name, "--test", "demo", "--count", "5", "--workspace", str(workspace)]) == 2
    assert main(["evaluate", run_dir.name, "--test", "demo", "--min-steps", "-1", "--workspace", str(workspace)]) == 2
    assert main(["evaluate", run_dir.name, "--test", "demo", "--inception-weights", "/no/file.pth",
                 "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert "no run 'no-such-run'" in err and "/no/such/data" in err and "at least 20" in err
    assert "/no/file.pth is not a file" in err and "cnn_min_steps must be a whole number >= 0, got -1" in err


@pytest.mark.slow
def test_the_training_data_is_refused_as_test_data(tiny_run, capsys):
    from dpsad_core.data import resolve_data_source, save_dataset
    from dpsad_core.data.dataset import ImageDataset

    workspace, run_dir = tiny_run
    demo = resolve_data_source("demo", workspace=workspace)
    save_dataset(ImageDataset(images=demo.images, labels=demo.labels, class_names=demo.class_names,
                              patient_ids=None, name="demo-train", source="tests"), workspace)
    capsys.readouterr()
    assert main(["evaluate", run_dir.name, "--test", "demo-train", "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert "'demo-train' is the training data of this run" in err and "never saw" in err


@pytest.mark.slow
def test_evaluate_images_wires_each_metric_to_the_right_data(workspace):
    import numpy as np

    from dpsad_core.data import load_demo
    from dpsad_core.evaluation import EvaluationOptions, FeatureNetSpec, evaluate_images

    train, test = load_demo(split="train"), load_demo(split="test")
    options = EvaluationOptions(cnn_epochs=8, feature_spec=FeatureNetSpec(min_steps=300))
    stages = evaluate_images(train.images[:300], train.labels[:300], training=train, test=test,
                             workspace=workspace, options=options)
    events = []
    try:
        while True:
            events.append(next(stages))
    except StopIteration as done:
        copied = done.value
    assert [e.stage for e in events] == ["downstream", "fidelity", "memorisation"]
    # Real training images as the "synthetic" set: useful, realistic, and all copies.
    assert copied["downstream"]["cnn"]["accuracy"] > 0.7 and copied["downstream"]["logistic"]["accuracy"] > 0.8
    assert copied["fidelity"]["precision"] > 0.8
    assert copied["memorisation"]["dcr_share_closer_to_training_than_holdout"] == 1.0
    assert copied["memorisation"]["near_copy_count"] == 300
    assert copied["memorisation"]["feature_space"]["share_closer_to_training_than_holdout"] > 0.95
    noise = np.random.default_rng(0).random((300, 1, 8, 8), dtype=np.float32)
    stages = evaluate_images(noise, train.labels[:300], training=train, test=test, workspace=workspace,
                             options=options)
    try:
        while True:
            next(stages)
    except StopIteration as done:
        noisy = done.value
    assert noisy["fidelity"]["feature_extractor"]["loaded_from_cache"] is True
    assert noisy["fidelity"]["frechet_distance_classifier_features"] > \
        5 * copied["fidelity"]["frechet_distance_classifier_features"]
    assert noisy["fidelity"]["precision"] < 0.2 and noisy["memorisation"]["near_copy_count"] == 0


@pytest.mark.slow
def test_evaluate_a_saved_sample_file(tiny_run, tmp_path):
    workspace, run_dir = tiny_run
    npz = tmp_path / "samples.npz"
    assert main(["sample", run_dir.name, "--per-class", "3", "--npz", str(npz), "--out", str(tmp_path / "g.png"),
                 "--workspace", str(workspace)]) == 0
    assert main(["evaluate", run_dir.name, "--test", "demo", "--samples", str(npz), "--epochs", "1", "--min-steps", "0",
                 "--workspace", str(workspace)]) == 0
    stored = read_evaluation(run_dir)
    assert stored["memorisation"]["n"] == 30 and stored["config"]["samples_file"] == "samples.npz"
    assert stored["config"]["sampler"] is None
    bad = tmp_path / "bad.npz"
    import numpy as np

    np.savez(bad, images=np.zeros((30, 16, 16), np.uint8), labels=np.zeros(30, np.int64))
    assert main(["evaluate", run_dir.name, "--test", "demo", "--samples", str(bad),
                 "--workspace", str(workspace)]) == 3
    with pytest.raises(SystemExit) as caught:  # argparse: --samples and --count exclude each other
        main(["evaluate", run_dir.name, "--test", "demo", "--samples", str(bad), "--count", "30"])
    assert caught.value.code == 2


@pytest.mark.slow
def test_guidance_reaches_the_sampler_and_is_recorded(tiny_run, monkeypatch):
    import dpsad_core.sampling as sampling

    workspace, run_dir = tiny_run
    seen, real_generate = [], sampling.generate

    def spy(*args, **kwargs):
        seen.append(kwargs["guidance"])
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(sampling, "generate", spy)
    assert main(["evaluate", run_dir.name, "--test", "demo", "--count", "20", "--epochs", "1", "--min-steps", "0",
                 "--guidance", "2.5", "--workspace", str(workspace)]) == 0
    assert seen == [2.5] and read_evaluation(run_dir)["config"]["guidance"] == 2.5
    assert main(["evaluate", run_dir.name, "--test", "demo", "--count", "20", "--epochs", "1", "--min-steps", "0",
                 "--workspace", str(workspace)]) == 0
    stored_default = json.loads((run_dir / "config.json").read_text())["config"]["hyper"]["guidance"]
    assert seen == [2.5, stored_default] and read_evaluation(run_dir)["config"]["guidance"] == stored_default
    assert main(["evaluate", run_dir.name, "--test", "demo", "--count", "20", "--guidance", "-1",
                 "--workspace", str(workspace)]) == 2


@pytest.mark.slow
def test_evaluate_samples_with_two_workers(tiny_run):
    # Rank 0 samples with the other worker (blocks of 128: both have work), then scores alone.
    import os
    import subprocess
    import sys

    workspace, run_dir = tiny_run
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "dpsad_core", "evaluate", run_dir.name, "--test", "demo", "--count",
                           "300", "--epochs", "1", "--min-steps", "0", "--device", "cpu", "--nproc", "2",
                           "--workspace", str(workspace), "--json"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["memorisation"]["n"] == 300 and read_evaluation(run_dir)["memorisation"]["n"] == 300
