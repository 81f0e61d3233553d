"""The randomness the guarantee rests on is secret and fresh per run, and each step adds what is composed.

- :class:`SecretRandomness`: fresh keys differ, a saved state continues its streams exactly, the noise
  has the calibrated standard deviation;
- two default runs on the same data differ; nothing exported regenerates a run's noise; a known
  ``privacy_seed`` makes a run reproducible and NOT private everywhere;
- a spy on the noise and the sampling of whole runs (dpsad, dpdm with a resume, DP-RDM) against the
  accountant's history;
- the not-private stamp survives a resume without a checkpoint.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dpsad_core.errors import NotPrivateError
from dpsad_core.events import RunFinished, RunInterrupted, RunStarted
from dpsad_core.export.bundle import export_bundle
from dpsad_core.export.verify import verify_bundle
from dpsad_core.privacy import Mechanism
from dpsad_core.privacy.randomness import REPRODUCIBLE_NOISE_PART, SecretRandomness, SecretStream
from dpsad_core.training import RunFolder, TrainConfig, resolve_hyperparameters, resume_training, start_training


def tiny_config(recipe: str = "dpdm", **overrides) -> TrainConfig:
    hyper = resolve_hyperparameters("tiny", overrides.pop("hyper", None))
    return TrainConfig(data="demo", recipe=recipe, epsilon=8.0, preset="tiny", hyper=hyper, device="cpu",
                       **overrides)


def train(config: TrainConfig, workspace: Path, **kwargs) -> dict:
    events = list(start_training(config, workspace=workspace, **kwargs))
    assert isinstance(events[-1], RunFinished)
    return events[-1].result


def weights(workspace: Path, run_id: str) -> dict[str, torch.Tensor]:
    return torch.load(RunFolder.open(workspace, run_id).model_path, weights_only=False)["state_dict"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


# -- the generator -----------------------------------------------------------------------------------
def test_fresh_keys_differ_and_a_saved_state_continues_every_stream_exactly():
    first, second = SecretRandomness.fresh(), SecretRandomness.fresh()
    assert not np.array_equal(first.stream("noise").random(8), second.stream("noise").random(8))
    first.stream("sampling").random(3)
    saved = first.state_dict()
    expected = (first.stream("sampling").random(5), first.stream("noise").secure_normal(5, 2.0))
    restored = SecretRandomness.from_state_dict(saved)
    assert np.array_equal(restored.stream("sampling").random(5), expected[0])
    assert np.array_equal(restored.stream("noise").secure_normal(5, 2.0), expected[1])
    # Streams are independent: the same call position of two streams gives different draws.
    fresh = SecretRandomness.fresh()
    assert not np.array_equal(fresh.stream("noise").random(4), fresh.stream("sampling").random(4))


def test_secure_noise_has_the_requested_standard_deviation_and_fills_the_mantissa():
    draws = SecretRandomness.fresh().stream("noise").secure_normal(400_000, 0.3)
    assert float(draws.std()) == pytest.approx(0.3, rel=0.01)  # sd of the sample sd: 0.11%
    assert abs(float(draws.mean())) < 5 * 0.3 / math.sqrt(draws.size)
    kurtosis = float(((draws / draws.std()) ** 4).mean())
    assert kurtosis == pytest.approx(3.0, abs=0.05)  # Gaussian, not a sum of uniforms
    assert np.unique(draws).size == draws.size


def test_bernoulli_rate_and_reproducible_seeds():
    stream = SecretRandomness.fresh().stream("sampling")
    assert stream.bernoulli(200_000, 0.05).mean() == pytest.approx(0.05, abs=0.002)
    a, b = SecretRandomness.from_seed(7), SecretRandomness.from_seed(7)
    assert a.reproducible and np.array_equal(a.stream("noise").random(6), b.stream("noise").random(6))
    assert not SecretRandomness.fresh().reproducible


# -- runs -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_default_runs_differ_and_a_privacy_seed_reproduces_but_is_not_private(workspace):
    first, second = train(tiny_config(), workspace), train(tiny_config(), workspace)
    assert first["private"] and second["private"] and first["secure_rng"] is True
    assert not same_weights(weights(workspace, first["run_id"]), weights(workspace, second["run_id"]))
    seeded = [train(tiny_config(privacy_seed=5), workspace) for _ in range(2)]
    assert same_weights(weights(workspace, seeded[0]["run_id"]), weights(workspace, seeded[1]["run_id"]))
    for result in seeded:
        assert result["private"] is False and result["epsilon"] is None and result["secure_rng"] is False
        assert REPRODUCIBLE_NOISE_PART in result["nonprivate_parts"]
    with pytest.raises(NotPrivateError):
        list(export_bundle(seeded[0]["run_id"], workspace=workspace, out=workspace / "refused", per_class=1,
                           device="cpu"))
    events = list(export_bundle(seeded[0]["run_id"], workspace=workspace, out=workspace / "research", per_class=1,
                                device="cpu", research=True))
    verified = verify_bundle(events[-1].bundle_path)
    assert verified.ok and verified.summary["private"] is False


@pytest.mark.slow
def test_no_exported_file_holds_what_regenerates_the_noise(workspace, tmp_path):
    result = train(tiny_config(), workspace)
    run = RunFolder.open(workspace, result["run_id"])
    secret = run.load_checkpoint()["rng"]["secret"]
    key = secret["key"]
    assert run.checkpoint_path.stat().st_mode & 0o077 == 0  # the only copy of the key: owner-only
    events = list(export_bundle(result["run_id"], workspace=workspace, out=tmp_path / "bundle", per_class=2,
                                device="cpu", npz=True))
    bundle = events[-1].bundle_path
    forms = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key),
             json.dumps(list(key)).encode(), json.dumps(list(key)).replace(" ", "").encode()]
    files = [path for path in bundle.rglob("*") if path.is_file()]
    assert files
    for path in files:
        content = path.read_bytes()
        assert not any(form in content for form in forms), path.name
    report = json.loads((bundle / "privacy-report.json").read_text())
    assert report["config"]["privacy_seed"] is None
    assert report["guarantee"]["secure_rng"] is True and "ChaCha20" in report["guarantee"]["secure_rng_note"]
    # The released model holds weights and public settings only, never the randomness state.
    payload = torch.load(run.model_path, weights_only=False)
    assert set(payload) == {"unet_config", "state_dict", "diffusion_steps", "schedule", "metadata"}


@pytest.mark.slow
def test_a_paper_run_resumed_without_a_checkpoint_stays_not_private(workspace):
    events = start_training(tiny_config("dpsad-paper"), workspace=workspace)
    started = next(events)
    assert isinstance(started, RunStarted)
    events.close()  # writes a checkpoint; removing it leaves a run killed before its first one
    run = RunFolder.open(workspace, started.run_id)
    run.checkpoint_path.unlink()
    result = list(resume_training(started.run_id, workspace=workspace))[-1].result
    assert result["private"] is False and result["epsilon"] is None
    assert set(result["nonprivate_parts"]) >= {"teacher", "discriminator"}
    with pytest.raises(NotPrivateError):
        list(export_bundle(started.run_id, workspace=workspace, out=workspace / "b", per_class=1, device="cpu"))


def test_an_export_trusts_the_plan_over_a_result_that_says_private():
    # A result.json written before the fix (private: true beside a plan with unprotected parts).
    from dpsad_core.runs import RunConfigRecord
    from dpsad_core.runs.folder import release_privacy

    config = RunConfigRecord(config={}, dataset={}, plan={"nonprivate_parts": ["teacher", "discriminator"]})
    derived = release_privacy(config, {"private": True, "epsilon": 7.9, "nonprivate_parts": []})
    assert derived["private"] is False and derived["epsilon"] is None
    assert derived["nonprivate_parts"] == ["teacher", "discriminator"]


# -- the spy: what each step drew against what the accountant composed -------------------------------
@pytest.fixture
def spy(monkeypatch):
    """Every secret draw in order: ("sample", count, probability) and ("noise", count, std)."""
    draws: list[tuple[str, int, float]] = []
    bernoulli, secure_normal = SecretStream.bernoulli, SecretStream.secure_normal

    def spy_bernoulli(self, count, probability):
        draws.append(("sample", int(count), float(probability)))
        return bernoulli(self, count, probability)

    def spy_secure_normal(self, count, std):
        draws.append(("noise", int(count), float(std)))
        return secure_normal(self, count, std)

    monkeypatch.setattr(SecretStream, "bernoulli", spy_bernoulli)
    monkeypatch.setattr(SecretStream, "secure_normal", spy_secure_normal)
    return draws


def steps_drawn(draws) -> list[dict]:
    """Split the draws into steps (each starts with its sampling) and merge each step's noise by release:
    consecutive draws of one standard deviation are one release (its count: the parameters it noised)."""
    steps: list[dict] = []
    for kind, count, value in draws:
        if kind == "sample":
            steps.append({"units": count, "rate": value, "releases": []})
            continue
        releases = steps[-1]["releases"]
        if releases and releases[-1][0] == value:
            releases[-1] = (value, releases[-1][1] + count)
        else:
            releases.append((value, count))
    return steps


def expected_steps(result: dict, parameters: dict[str, int], units: int) -> list[dict]:
    """The accountant's history, step by step, as draws: the rate, then each release's (std, count)."""
    expected = []
    for item in result["mechanisms"]:
        mechanism = Mechanism.from_dict(item)
        # The engine noises the discriminator before the student: one Poisson batch, two releases.
        order = ["discriminator", "student"] if mechanism.components else [mechanism.part]
        releases = []
        for release in order:
            sigma, clip = mechanism.noise_of(release)
            releases.append((sigma * clip, parameters[release]))
        expected += [{"units": units, "rate": mechanism.sample_rate, "releases": releases}] * mechanism.steps
    return expected


def _demo_units(workspace: Path) -> int:
    """The privacy units a step samples from: every unit of the data (a report may round the count)."""
    from dpsad_core.data import resolve_data_source

    return resolve_data_source("demo", workspace=workspace).num_privacy_units


def _parameter_counts(workspace: Path, result: dict) -> dict[str, int]:
    from dpsad_core.models import Discriminator, DiscriminatorConfig, UNet, UNetConfig

    payload = torch.load(RunFolder.open(workspace, result["run_id"]).model_path, weights_only=False)
    unet = sum(p.numel() for p in UNet(UNetConfig(**payload["unet_config"])).parameters())
    hyper = resolve_hyperparameters("tiny")
    disc = Discriminator(DiscriminatorConfig(image_channels=1, num_classes=10, channels=hyper.disc_channels))
    return {"teacher": unet, "student": unet, "denoiser": unet,
            "discriminator": sum(p.numel() for p in disc.parameters())}


@pytest.mark.slow
def test_every_dpsad_step_adds_exactly_what_the_accountant_composes(workspace, spy):
    result = train(tiny_config("dpsad-split"), workspace)
    drawn = [step for step in steps_drawn(spy) if step["releases"]]
    expected = expected_steps(result, _parameter_counts(workspace, result), units=_demo_units(workspace))
    assert [m["part"] for m in result["mechanisms"]] == ["teacher", "student+discriminator"]
    assert len(drawn) == len(expected) == 8
    for got, want in zip(drawn, expected, strict=True):
        assert got["units"] == want["units"] and got["rate"] == want["rate"]
        assert [count for _, count in got["releases"]] == [count for _, count in want["releases"]]
        assert [std for std, _ in got["releases"]] == pytest.approx([std for std, _ in want["releases"]], rel=1e-12)


@pytest.mark.slow
def test_a_resumed_dpdm_run_draws_exactly_what_the_accountant_composes(workspace, spy):
    calls = {"n": 0}

    def stop_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    events = list(start_training(tiny_config("dpdm"), workspace=workspace, stop=stop_after_two))
    assert isinstance(events[-1], RunInterrupted)
    result = list(resume_training(events[-1].run_id, workspace=workspace))[-1].result
    drawn = steps_drawn(spy)
    expected = expected_steps(result, _parameter_counts(workspace, result), units=_demo_units(workspace))
    assert len(drawn) == len(expected) == 4  # two before the stop, two after: none lost, none repeated
    for got, want in zip(drawn, expected, strict=True):
        assert (got["units"], got["rate"]) == (want["units"], want["rate"])
        assert [count for _, count in got["releases"]] == [count for _, count in want["releases"]]
        assert [std for std, _ in got["releases"]] == pytest.approx([std for std, _ in want["releases"]], rel=1e-12)


@pytest.mark.slow
def test_every_dp_rdm_query_adds_exactly_what_the_accountant_composes(rdm_workspace, spy):
    from dpsad_core.rdm.generation import GenerateConfig, generate_rdm
    from dpsad_core.rdm.index import load_index
    from tests.fixtures.rdm import INDEX, MODEL

    config = GenerateConfig(model=MODEL, index=INDEX, epsilon=10.0, k=5, sample_rate=0.1, sigma=0.3, per_class=2,
                            sample_steps=3, seed=0)
    result = list(generate_rdm(config, workspace=rdm_workspace))[-1].result
    index = load_index(INDEX, workspace=rdm_workspace)
    count, mechanism = [Mechanism.from_dict(item) for item in result["mechanisms"]]
    # The index's N is private: its noisy count (sensitivity 1) is drawn first, once, before any query.
    assert count.part == "count" and spy[0] == ("noise", 1, count.noise_multiplier)
    sensitivity = mechanism.components[0]["sensitivity"]
    queries = steps_drawn(spy[1:])
    assert len(queries) == mechanism.steps == 20
    for query in queries:
        assert query["units"] == int(index.units.max()) + 1 and query["rate"] == mechanism.sample_rate
        (std, count), = query["releases"]
        assert count == index.embeddings.shape[1]
        assert std == pytest.approx(mechanism.noise_multiplier * sensitivity, rel=1e-12)
    assert result["private"] is True and result["secure_rng"] is True


@pytest.mark.slow
def test_a_dp_rdm_run_with_a_privacy_seed_is_not_private(rdm_workspace):
    from dpsad_core.rdm.generation import GenerateConfig, generate_rdm
    from tests.fixtures.rdm import INDEX, MODEL

    config = GenerateConfig(model=MODEL, index=INDEX, epsilon=10.0, k=5, sample_rate=0.1, sigma=0.3, per_class=1,
                            sample_steps=3, seed=0, privacy_seed=3)
    result = list(generate_rdm(config, workspace=rdm_workspace))[-1].result
    assert result["private"] is False and result["epsilon"] is None
    assert result["nonprivate_parts"] == [REPRODUCIBLE_NOISE_PART]
    with pytest.raises(NotPrivateError):
        list(export_bundle(result["run_id"], workspace=rdm_workspace, out=rdm_workspace / "b"))


@pytest.mark.slow
def test_an_audit_without_a_seed_draws_its_canary_inclusion_from_the_secret_stream(workspace, spy):
    from dpsad_core.evaluation.audit_run import AuditPrepared, AuditSettings, run_audit

    config = TrainConfig(data="demo", recipe="dpdm", epsilon=1.0, preset="tiny", device="cpu",
                         hyper=resolve_hyperparameters("tiny"))
    events = list(run_audit(config, AuditSettings(canaries=40, score_draws=2), workspace=workspace))
    prepared = events[0]
    assert isinstance(prepared, AuditPrepared)
    assert spy[0] == ("sample", 40, 0.5)  # the coin flips, before any training step
    stored = json.loads((workspace / "runs" / events[-1].run_id / "audit.json").read_text())
    assert f"s{stored['settings']['seed']}" not in prepared.dataset_name


# -- the stamp on every path -------------------------------------------------------------------------
@pytest.mark.slow
def test_sample_of_a_non_private_run_is_stamped_in_the_grid_the_npz_and_the_json(workspace, tmp_path, capsys):
    from dpsad_core.cli import main
    from dpsad_core.privacy.ledger import PrivacyLedger

    result = train(tiny_config(privacy_seed=1), workspace)
    grid, npz = tmp_path / "grid.png", tmp_path / "samples.npz"
    assert main(["sample", result["run_id"], "--per-class", "1", "--out", str(grid), "--npz", str(npz),
                 "--device", "cpu", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["private"] is False and "NOT DIFFERENTIALLY PRIVATE" in summary["warning"]
    assert "NOT DIFFERENTIALLY PRIVATE" in captured.err
    with np.load(npz) as archive:
        assert str(archive["stamp"]) == "NOT DIFFERENTIALLY PRIVATE"
    from PIL import Image

    assert Image.open(grid).convert("RGB").getpixel((1, 1)) == (176, 0, 32)  # the red band
    # The ledger shows the run as not private, like the run itself.
    entries = PrivacyLedger(workspace).summary(result["dataset"]["fingerprint"]).entries
    assert [entry.private for entry in entries] == [False]


def test_verify_reads_a_report_whose_plan_lists_unprotected_parts_as_not_private(tmp_path):
    from dpsad_core.export.layout import REPORT_JSON
    from dpsad_core.export.manifest import seal_folder
    from dpsad_core.export.signing import load_or_create_signing_key
    from tests.export.conftest import make_sealed_bundle

    bundle = make_sealed_bundle(tmp_path / "bundle")
    assert verify_bundle(bundle).summary["private"] is True
    report = json.loads((bundle / REPORT_JSON).read_text())
    report["plan"] = {"nonprivate_parts": ["teacher", "discriminator"]}  # the headline still says private
    (bundle / REPORT_JSON).write_text(json.dumps(report))
    for name in ("MANIFEST", "MANIFEST.sig"):
        (bundle / name).unlink()
    seal_folder(bundle, load_or_create_signing_key())
    verified = verify_bundle(bundle)
    assert verified.ok and verified.summary["private"] is False and verified.summary["epsilon"] is None
