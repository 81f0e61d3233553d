"""``privacy-report.json``: what the bundle's privacy guarantee is, how it was computed, what it covers.

Built only from what may leave the machine (see docs/privacy.md):

- data-independent numbers: the mechanisms (noise, sample rate, steps, clipping), the accountant's
  values, the epsilon curve (a function of those alone), the resolved config and plan;
- the dataset's name, HMAC fingerprint and size (never per-class counts or per-record values);
- loss curves of phases that never read the private data (``privacy`` "public" or "postprocess" in
  the plan: public data, or the released teacher's own samples);
- only with ``include_private_diagnostics``: loss curves of phases that read the private data and
  the aggregate numbers of ``evaluation.json``, both computed without noise and labelled as outside
  the guarantee.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpsad_core.export.layout import NOT_DP_STAMP
from dpsad_core.export.names import (
    BUILT_IN_SOURCES,
    INDEX_NAME,
    PRIVATE_NAME,
    PUBLIC_NAME,
    exported_name,
    shareable_spec,
)
from dpsad_core.privacy.plain_words import likelihood_factor
from dpsad_core.runs.records import RunConfigRecord, RunKind, RunResult

REPORT_FORMAT = "dpsad-privacy-report/1"
MAX_CURVE_POINTS = 400
#: Phase privacy values (training/planner.py) of phases that never read the private data.
PUBLIC_PRIVACY = ("public", "postprocess")
OUTSIDE_GUARANTEE = ("OUTSIDE THE PRIVACY GUARANTEE: computed from the private data without noise and included "
                     "because the exporter asked for it (--include-private-diagnostics); publishing it releases "
                     "information that epsilon does not cover")


def build_report(*, run_dir: Path, config: RunConfigRecord, result: RunResult, metrics: list[dict[str, Any]],
                 evaluation: dict[str, Any] | None, bundle: dict[str, Any], signer: dict[str, str],
                 software: dict[str, str], created: str, include_private_diagnostics: bool,
                 model: dict[str, Any]) -> dict[str, Any]:
    """The report as a JSON-ready dict.

    Parameters
    ----------
    run_dir
        The run folder (only its name is reported; local paths stay out of the report).
    config, result
        The run's ``config.json`` and ``result.json`` (with the plan's parts: ``RunResult.with_plan``).
    metrics
        The run's ``metrics.jsonl`` records (only the epsilon column and public-phase losses are used
        unless ``include_private_diagnostics``).
    evaluation
        The run's ``evaluation.json``, or None; used only with ``include_private_diagnostics``.
    model
        The report's ``model`` section (``ImageSource.model``): the released model's sha256 (the model
        is not shipped), or for a DP-RDM run the public model's identity, since no private model exists.
    bundle
        What the export wrote: image count, classes, sampler settings.
    signer
        ``SignerInfo.to_dict()`` of the key that signs the bundle.
    software
        Versions at export time.
    created
        ISO time of the export.
    include_private_diagnostics
        Add the diagnostics that are not covered by the guarantee (labelled as such).
    """
    private = result.private
    plan = dict(config.plan)
    dataset = dict(result.dataset)
    summary = dict(config.dataset)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "title": _title(result),
        "stamp": None if private else NOT_DP_STAMP,
        "created": created,
        "guarantee": {
            "differentially_private": private,
            "epsilon": result.epsilon if private else None,
            "delta": result.delta,
            "epsilon_target": result.epsilon_target,
            "unit_of_privacy": result.unit_of_privacy,
            "accountant_values": dict(result.accountant_values),
            "accountant": "epsilon is the smaller of two upper bounds on the composed mechanisms: Renyi DP (rdp) "
                          "and the PRV accountant (prv)",
            "nonprivate_parts": list(result.nonprivate_parts),
            "claimed_epsilon_paper": result.claimed_epsilon_paper,
            "secure_rng": result.secure_rng,
            "secure_rng_note": result.secure_rng_note,
        },
        "plain_language": plain_language(result, generator=bundle.get("generator", "release")),
        "mechanisms": [dict(mechanism) for mechanism in result.mechanisms],
        # Days, not times, and no training time: how long a run took grows with its Poisson batches, whose
        # sizes follow the private data's size (a timing channel no mechanism counts).
        "run": {"run_id": result.run_id, "folder_name": Path(run_dir).name, "recipe": result.recipe,
                "created": _day(config.created), "finished": _day(result.finished),
                "steps": None if result.steps is None else dict(result.steps), "device": result.device},
        "config": shareable_config(config),
        "plan": plan,
        "dataset": dataset_section(summary, dataset, result, plan=plan),
        "public_dataset": _public_dataset(config.public_dataset),
        "model": model,
        "mechanism": rdm_mechanism(result, config),
        "software": {"training": dict(config.software or {}), "export": software},
        "curves": {"epsilon": epsilon_curve(metrics), "public_losses": loss_curves(metrics, plan, public=True)},
        "outside_guarantee": None,
        "bundle": bundle,
        "signer": signer,
    }
    if include_private_diagnostics:
        report["outside_guarantee"] = {
            "note": OUTSIDE_GUARANTEE,
            "private_losses": loss_curves(metrics, plan, public=False),
            "evaluation": evaluation_metrics(evaluation) if evaluation is not None else None,
        }
    return report


CLASS_NAMES_FROM = {
    "declared": "declared public by the analyst at import (--classes); records with another label were refused",
    "source": "the public class names of the source's format (a built-in dataset, MNIST-like IDX or MedMNIST)",
    "data": "read from the private data (folder or label names): public only because the analyst imported them so",
}


def dataset_section(summary: dict[str, Any], dataset: dict[str, Any], result: RunResult,
                    plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's description of the private data: only what the analyst declared public (data.public_metadata).

    The exact number of records and privacy units appears only when declared public (``import --public-count``);
    otherwise the count the run was planned with is given instead: its noisy count (privacy/noisy_count.py)
    rounded down to 2 significant figures, or, for runs planned before the noisy count, the exact N rounded.
    """
    from dpsad_core.data.public_metadata import published_units

    unit = result.unit_of_privacy
    plan = plan or {}  # a run recorded before its plan was: no noisy count
    declared = bool(summary.get("count_declared", False))
    units = dataset["num_units"]
    noisy = not declared and plan.get("units_from") == "noisy count"
    published = plan["private_units"] if noisy else published_units(units, declared=declared)
    if declared:
        count = "exact: declared public by the analyst at import (--public-count)"
    elif noisy:
        sigma = plan["count_mechanism"]["noise_multiplier"]
        count = (f"withheld: the number of {unit}s is private; stated as a noisy count (Gaussian noise of standard "
                 f"deviation {sigma:g} {unit}s, its cost composed in epsilon) rounded down to 2 significant figures "
                 f"({published}), the number the sample rate and the default delta were computed from")
    else:
        count = (f"withheld: the number of {unit}s is private; stated rounded down to 2 significant figures "
                 f"({published}), the number the sample rate and the default delta were computed from")
    return {
        "name": exported_name(summary, PRIVATE_NAME), "fingerprint": dataset["fingerprint"],
        "num_records": dataset["num_records"] if declared else None,
        "num_privacy_units": units if declared else None,
        "num_privacy_units_published": published,
        # The standard deviation of the count's noise (None: exact, or rounded by a run planned before it).
        "count_noise": plan["count_mechanism"]["noise_multiplier"] if noisy else None,
        "count": count,
        "neighbouring": f"add or remove one {unit} (with all its records): every number in this report is the same "
                        "for both datasets, or covered by the guarantee",
        "num_classes": summary.get("num_classes"), "resolution": summary.get("resolution"),
        "channels": summary.get("channels"), "unit_of_privacy": unit,
        "class_names_from": CLASS_NAMES_FROM.get(summary.get("class_names_from", "data"), CLASS_NAMES_FROM["data"]),
        "note": "the fingerprint is an HMAC with a key local to the exporting installation: it identifies the dataset "
                "there without revealing any record",
    }


def shareable_config(config: RunConfigRecord) -> dict[str, Any]:
    """The run's resolved config with every local name replaced (:mod:`dpsad_core.export.names`).

    ``data``, ``public_data`` and an audit's ``ledger_data`` may be paths on the exporting machine, or
    names derived from local folders, which for clinical data often carry a patient's or a ward's name:
    the report gives the names the analyst declared, or neutral ones. Example query images are numbered,
    and a DP-RDM index (named after its dataset by default) is called "private index".
    """
    resolved = dict(config.config)
    summaries = {"data": (config.dataset, PRIVATE_NAME), "ledger_data": (config.dataset, PRIVATE_NAME),
                 "public_data": (config.public_dataset, PUBLIC_NAME)}
    for key, (summary, default) in summaries.items():
        if resolved.get(key) is not None:
            resolved[key] = shareable_spec(resolved[key], summary, default)
    if isinstance(resolved.get("examples"), list):  # DP-RDM example query images: never their file names
        resolved["examples"] = [f"example {number}" for number in range(1, len(resolved["examples"]) + 1)]
    if resolved.get("index") is not None:
        resolved["index"] = INDEX_NAME
    return resolved


def _title(result: RunResult) -> str:
    if not result.private:
        return f"{NOT_DP_STAMP}: synthetic images from run {result.run_id}"
    how = " (DP-RDM private retrieval)" if is_rdm(result) else ""
    return (f"({result.epsilon:.4g}, {result.delta:.3g})-differentially private synthetic images{how} from "
            f"run {result.run_id}")


def _day(timestamp: str | None) -> str | None:
    """``2026-12-03`` of an ISO timestamp: when, to the day, without the duration the exact times give."""
    return timestamp[:10] if isinstance(timestamp, str) else None


def _public_dataset(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not summary:
        return None
    keep = ("fingerprint", "num_records", "num_classes", "resolution", "channels")
    source = summary.get("source")  # a built-in source's name, never a local path
    return {"name": exported_name(summary, PUBLIC_NAME), "source": source if source in BUILT_IN_SOURCES else None} \
        | {key: summary.get(key) for key in keep}


def plain_language(result: RunResult, generator: str = "release") -> dict[str, list[str]]:
    """What the guarantee means and does not mean, for the run's unit of privacy, in plain words.

    ``generator``: the network the bundle's images came from ("teacher" for a student's DP teacher).
    """
    unit = result.unit_of_privacy
    delta = result.delta
    if not result.private or result.epsilon is None:  # epsilon is None exactly when the run is not private
        parts = ", ".join(result.nonprivate_parts)
        return {
            "means": [f"This bundle has NO differential privacy guarantee. Not protected: {parts} (a part trained "
                      "on the private data without noise, or noise that anyone with its seed can regenerate).",
                      "It was exported for research only (--research)."],
            "does_not_mean": ["It does not mean the images are safe to share: a generator trained without protection "
                              "can memorise and reproduce private records.",
                              "A number printed next to the published method's accounting is a claim, not a bound."],
        }
    if is_rdm(result):
        from dpsad_core.export.report_rdm import rdm_plain_language

        return rdm_plain_language(result)
    epsilon = result.epsilon
    record = "patient (all of that patient's images together)" if unit == "patient" else "image (with its label)"
    means = [
        f"Take any single {record} in the private dataset. Whether it was used in training or not, every possible "
        f"output of training (and so this bundle) has almost the same probability: at most e^epsilon = "
        f"{likelihood_factor(epsilon)} times more or less likely, except with a probability of at most "
        f"delta = {delta:.3g}.",
        "So an observer of this bundle, whatever else they know, learns little about whether that record was used "
        "or what it contains; the smaller epsilon, the less.",
        "Every part of the pipeline that read the private data is included in epsilon (see 'mechanisms'); the "
        "images are samples from the released model, which costs no further privacy (post-processing).",
    ]
    student = result.student
    if student and generator == "teacher":
        means.append(
            f"The images come from the privately trained teacher itself, sampled in {student['teacher_sample_steps']} "
            f"steps. The run also distilled a faster {student['sample_steps']}-step 'student' from it (for free: "
            "it never read the private data); this bundle did not use it.")
    elif student:
        means.append(
            f"The images come from a fast 'student' generator that makes an image in {student['sample_steps']} steps "
            f"instead of the teacher's {student['teacher_sample_steps']}. The student learned only from "
            f"{student['pool_size']:,} images the privately trained teacher generated itself, never from the private "
            "data: like the images in this bundle, it is computed from the teacher alone, so it costs no privacy "
            "beyond the teacher's epsilon.")
    does_not_mean = [
        "It does not hide facts about the population the data shows (for example how a disease looks, or how "
        "common it is); it limits what can be learned about one record.",
        "It does not make the images realistic or useful; check utility before relying on them.",
        "The local run folder (losses, checkpoints, evaluation results) is not covered: only what is in this "
        "bundle is.",
        f"epsilon = {epsilon:.4g} is an upper bound from the accountant; it is not a measured attack success rate.",
        "It assumes the run's random choices (which records each step looked at, and the noise) stay secret: they "
        "came from a cryptographically secure generator with a fresh key that never left the exporting machine.",
    ]
    if unit == "image":
        does_not_mean.append("The unit is the image: a person with k images in the private data is protected at "
                             "roughly k times epsilon, not epsilon.")
    if result.recipe == "dpsad-public-teacher" or "pretrain" in (result.steps or {}):
        does_not_mean.append("Data declared public (the public teacher or pre-training data) is not protected: the "
                             "guarantee assumes it really is public.")
    return {"means": means, "does_not_mean": does_not_mean}


def is_rdm(result: RunResult) -> bool:
    """Whether ``result`` is a DP-RDM run's (images from private retrieval, no private model)."""
    return result.kind is RunKind.DP_RDM


def rdm_mechanism(result: RunResult, config: RunConfigRecord) -> dict[str, Any] | None:
    """The DP-RDM mechanism section (None for other recipes); see :mod:`dpsad_core.export.report_rdm`."""
    if not is_rdm(result):
        return None
    from dpsad_core.export.report_rdm import rdm_mechanism_section

    return rdm_mechanism_section(result, config)


def _downsample(points: list[Any]) -> list[Any]:
    if len(points) <= MAX_CURVE_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_CURVE_POINTS)
    kept = points[::stride]
    return kept if kept[-1] is points[-1] else kept + [points[-1]]


def epsilon_curve(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Epsilon spent after each step (an upper bound). Data-independent: a function of the mechanisms alone.

    Runs since the PRV-calibration fix log ``epsilon_bound`` (RDP, capped by the target when PRV
    calibrated the noise); older runs only ``epsilon_rdp``.
    """
    points = [(index + 1, record["phase"], _finite(record.get("epsilon_bound", record.get("epsilon_rdp"))))
              for index, record in enumerate(metrics)]
    points = _downsample(points)
    return {"step": [p[0] for p in points], "phase": [p[1] for p in points], "epsilon": [p[2] for p in points],
            "note": "upper bound on the epsilon spent after each training step, all phases in order: the RDP "
                    "bound, capped by the target when the noise was calibrated with PRV (the whole plan's PRV "
                    "epsilon is at most the target); null: not private"}


def loss_curves(metrics: list[dict[str, Any]], plan: dict[str, Any], *, public: bool) -> dict[str, Any]:
    """Loss columns per phase, for phases that did (``public=False``) or did not read the private data."""
    public_phases = {phase["name"] for phase in plan.get("phases", []) if phase["privacy"] in PUBLIC_PRIVACY}
    curves: dict[str, Any] = {}
    for phase in dict.fromkeys(record["phase"] for record in metrics):
        if (phase in public_phases) != public:
            continue
        records = [record for record in metrics if record["phase"] == phase]
        columns = sorted({key for record in records for key in record if key.endswith("loss")})
        sampled = _downsample(records)
        curves[phase] = {"step": [record["step"] for record in sampled],
                         **{column: [_finite(record.get(column)) for record in sampled] for column in columns}}
    return curves


def evaluation_metrics(evaluation: dict[str, Any], *, max_depth: int = 3) -> dict[str, Any]:
    """Aggregate scalars of ``evaluation.json`` as ``{"section.key": value}``.

    Lists are dropped (they may hold per-record values), and so are the ``config`` section and any
    path or image: only numbers, booleans and short texts about the whole synthetic set are kept.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, dict):
            if depth >= max_depth:
                return
            for key, item in value.items():
                if depth == 0 and key in ("config", "run_id", "run_dir"):
                    continue
                walk(f"{prefix}.{key}" if prefix else str(key), item, depth + 1)
        elif isinstance(value, bool) or value is None:
            flat[prefix] = value
        elif isinstance(value, (int, float)):
            flat[prefix] = _finite(value)
        elif isinstance(value, str) and len(value) <= 300 and "/" not in value:
            flat[prefix] = value

    walk("", evaluation, 0)
    return flat


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def export_software_versions() -> dict[str, str]:
    """Versions of what the export ran with (torch and numpy are imported by the export already)."""
    import cryptography
    import numpy
    import PIL
    import torch

    import dpsad_core

    return {"dpsad_core": dpsad_core.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "pillow": PIL.__version__, "cryptography": cryptography.__version__,
            "python": platform.python_version()}
