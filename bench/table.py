"""The benchmark table against the literature: run its cells, render it into docs/benchmarks.md.

    python bench/table.py run --profile cpu --cell mnist-eps10-dpdm     # one cell
    python bench/table.py run --profile cpu --missing                   # every cell not yet measured
    python bench/table.py reference --profile cpu                       # the same classifiers on real data
    python bench/table.py table --profile cpu [--write-docs]            # the markdown table

A cell trains with the product's engine and scores the run with ``dpsad-core evaluate`` (the same
code an analyst uses), then writes ``bench/results/<profile>/<cell>.json``: the numbers, the compute
(device, threads, minutes per stage) and the command. Results are committed, so the table grows
across sessions; ``--missing`` resumes where the last session stopped. What each cell is lives in
``bench/table_cells.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table_cells import DATASETS, DELTA, PROFILES, PUBLISHED, STUDENT_RECIPES, Cell, cells, find_cell

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


def training_data(cell: Cell, workspace: Path) -> str:
    """What the cell trains on: the dataset's path, or, when its duplicates must be merged into one
    privacy unit (the import's ``--duplicates merge``), the dataset saved in ``workspace`` that way."""
    data = DATASETS[cell.dataset]
    if data.duplicates == "refuse":
        return data.train
    from dpsad_core.data import load_dataset, save_dataset

    profile = PROFILES[cell.profile]
    name = f"bench-{cell.dataset}-{profile.resolution or 'native'}"
    dataset = load_dataset(data.train, resolution=profile.resolution, duplicates=data.duplicates, name=name)
    save_dataset(dataset, workspace)
    return name


def cell_config(cell: Cell, *, seed: int, device: str, data: str | None = None):
    """The engine's :class:`~dpsad_core.training.TrainConfig` for one cell."""
    from dpsad_core.training import TrainConfig, resolve_hyperparameters

    profile = PROFILES[cell.profile]
    return TrainConfig(data=data or DATASETS[cell.dataset].train, recipe=cell.engine_recipe, epsilon=cell.epsilon,
                       delta=DELTA, preset=profile.preset,
                       hyper=resolve_hyperparameters(profile.preset, cell.overrides()),
                       public_data=cell.public_data, resolution=profile.resolution, seed=seed, device=device)


def run_cell(cell: Cell, *, workspace: Path, results: Path, device: str, seed: int) -> dict:
    """Train and evaluate one cell; write and return its result record."""
    import torch

    from dpsad_core.evaluation import EvaluationFinished, EvaluationOptions, evaluate_run
    from dpsad_core.evaluation.report import FeatureNetSpec
    from dpsad_core.events import RunFinished, StepCompleted
    from dpsad_core.training import start_training

    profile, data = PROFILES[cell.profile], DATASETS[cell.dataset]
    config = cell_config(cell, seed=seed, device=device, data=training_data(cell, workspace))
    began, last_print, finished = time.perf_counter(), 0.0, None
    for event in start_training(config, workspace=workspace):
        if isinstance(event, StepCompleted) and time.perf_counter() - last_print > 60:
            last_print = time.perf_counter()
            print(f"# {cell.cell_id}: {event.phase} {event.step}/{event.total_steps}", file=sys.stderr, flush=True)
        if isinstance(event, RunFinished):
            finished = event.result
    train_minutes = (time.perf_counter() - began) / 60

    def evaluate(generator: str) -> tuple[dict, float]:
        began, evaluation = time.perf_counter(), None
        options = EvaluationOptions(per_class=profile.per_class, cnn_epochs=profile.cnn_epochs,
                                    cnn_min_steps=profile.cnn_min_steps, seed=seed, device=device,
                                    feature_spec=FeatureNetSpec(**profile.feature_spec), generator=generator)
        for event in evaluate_run(finished["run_id"], test=data.test, workspace=workspace, options=options):
            if isinstance(event, EvaluationFinished):
                evaluation = event.result
        return evaluation, (time.perf_counter() - began) / 60

    evaluation, evaluate_minutes = evaluate("release")
    seconds = evaluation["config"]["seconds"]
    comparison = None
    if cell.recipe in STUDENT_RECIPES:
        # The student against its own teacher (DDIM): same run, same evaluation, another generator.
        teacher, teacher_minutes = evaluate("teacher")
        evaluate_minutes += teacher_minutes
        comparison = {"student": _generator_numbers(evaluation), "teacher": _generator_numbers(teacher),
                      "student_train_minutes": round(finished["student"]["seconds"] / 60, 2)}
    record = {
        "cell": cell.cell_id, "profile": cell.profile, "dataset": cell.dataset, "epsilon_target": cell.epsilon,
        "recipe": cell.recipe, "engine_recipe": cell.engine_recipe, "public_data": cell.public_data,
        "command": cell.command(), "overrides": {k: str(v) for k, v in cell.overrides().items()},
        "preset": profile.preset, "resolution": evaluation["config"]["training_set"]["resolution"],
        "private": finished["private"], "epsilon": finished["epsilon"], "delta": finished["delta"],
        "accountant_values": finished["accountant_values"],
        "mechanisms": [{k: m[k] for k in ("part", "noise_multiplier", "sample_rate", "steps", "clip_norm")}
                       for m in finished["mechanisms"]],
        "cnn_accuracy": evaluation["downstream"]["cnn"]["accuracy"],
        "logistic_accuracy": evaluation["downstream"]["logistic"]["accuracy"],
        "frechet_distance": evaluation["fidelity"]["frechet_distance_classifier_features"],
        "frechet_distance_real_reference":
            evaluation["fidelity"]["frechet_distance_classifier_features_real_reference"],
        "precision": evaluation["fidelity"]["precision"], "recall": evaluation["fidelity"]["recall"],
        "dcr_share": evaluation["memorisation"]["dcr_share_closer_to_training_than_holdout"],
        "synthetic_count": evaluation["config"]["synthetic_count"],
        "student_vs_teacher": comparison,
        "compute": {
            "device": finished["device"], "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "train_minutes": round(train_minutes, 2),
            "sample_minutes": round(seconds.get("sample", 0) / 60, 2),
            "evaluate_minutes": round(evaluate_minutes, 2),
            "total_minutes": round(train_minutes + evaluate_minutes, 2),
        },
        "seed": seed, "measured": time.strftime("%Y-%m-%d", time.gmtime()), "commit": _commit(),
        "torch": torch.__version__,
    }
    from dpsad_core.atomic import atomic_write_json

    atomic_write_json(results / cell.profile / f"{cell.cell_id}.json", record)
    return record


def _generator_numbers(evaluation: dict) -> dict:
    """What the student-versus-teacher table compares, from one evaluation."""
    config = evaluation["config"]
    return {"generator": config["generator"], "sample_steps": config["sample_steps"],
            "cnn_accuracy": evaluation["downstream"]["cnn"]["accuracy"],
            "frechet_distance": evaluation["fidelity"]["frechet_distance_classifier_features"],
            "dcr_share": evaluation["memorisation"]["dcr_share_closer_to_training_than_holdout"],
            "images_per_second": round(config["synthetic_count"] / max(config["seconds"]["sample"], 1e-9), 1)}


def reference_id(dataset: str) -> str:
    return f"reference-{dataset}"


def run_reference(dataset: str, profile_name: str, *, results: Path, seed: int, cnn_epochs: int | None = None,
                  cnn_min_steps: int | None = None, per_class: int | None = None) -> dict:
    """The cells' CNN and logistic regression trained on *real* training images instead of synthetic ones.

    As many images per class as a cell samples (fewer where a class has fewer), drawn at random, at the
    profile's resolution, tested on the same real test set: the accuracy a perfect generator would give
    at this size, the ceiling each cell's number should be read against. No privacy (real data).
    """
    import numpy as np

    from dpsad_core.data import resolve_data_source
    from dpsad_core.evaluation.downstream import downstream_accuracy
    from dpsad_core.evaluation.logistic import logistic_accuracy

    profile, data = PROFILES[profile_name], DATASETS[dataset]
    cnn_epochs = cnn_epochs or profile.cnn_epochs
    cnn_min_steps = profile.cnn_min_steps if cnn_min_steps is None else cnn_min_steps
    per_class = per_class or profile.per_class
    with tempfile.TemporaryDirectory(prefix="dpsad-reference-") as workspace:  # nothing is saved in it
        train = resolve_data_source(data.train, workspace=Path(workspace), resolution=profile.resolution)
        test = resolve_data_source(data.test, workspace=Path(workspace), split="test", resolution=train.resolution,
                                   channels=train.channels, min_records=1)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[:per_class]
                             for c in range(train.num_classes)])
    images, labels = train.images[chosen], train.labels[chosen]
    began = time.perf_counter()
    cnn = downstream_accuracy(images, labels, test.images, test.labels, num_classes=train.num_classes,
                              epochs=cnn_epochs, min_steps=cnn_min_steps, seed=seed)
    logistic = logistic_accuracy(images, labels, test.images, test.labels, seed=seed)
    record = {
        "reference": reference_id(dataset), "profile": profile_name, "dataset": dataset,
        "records": int(len(chosen)), "per_class": per_class, "resolution": train.resolution,
        "cnn_accuracy": cnn.test_accuracy, "cnn_epochs": cnn.epochs, "cnn_min_steps": cnn_min_steps,
        "cnn_chosen_epoch": cnn.chosen_epoch,
        "logistic_accuracy": logistic.test_accuracy, "minutes": round((time.perf_counter() - began) / 60, 2),
        "command": f"python bench/table.py reference --profile {profile_name} --dataset {dataset}"
                   + (f" --cnn-epochs {cnn_epochs}" if cnn_epochs != profile.cnn_epochs else "")
                   + (f" --cnn-min-steps {cnn_min_steps}" if cnn_min_steps != profile.cnn_min_steps else "")
                   + (f" --per-class {per_class}" if per_class != profile.per_class else ""),
        "seed": seed, "measured": time.strftime("%Y-%m-%d", time.gmtime()), "commit": _commit(),
    }
    from dpsad_core.atomic import atomic_write_json

    atomic_write_json(results / profile_name / f"{reference_id(dataset)}.json", record)
    return record


def load_results(results: Path, profile: str) -> dict[str, dict]:
    folder = results / profile
    if not folder.is_dir():
        return {}
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def render_table(profile: str, results: dict[str, dict]) -> str:
    """Markdown: per dataset and epsilon, the measured cells, one row naming those not measured, then
    the published rows."""
    lines = ["| dataset | target epsilon | recipe | certified epsilon | CNN accuracy | logistic accuracy | "
             "Frechet distance (real reference) | minutes: train + evaluate | device | cell |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, float], list[Cell]] = {}
    for cell in cells(profile):
        groups.setdefault((cell.dataset, cell.epsilon), []).append(cell)
    for (dataset, epsilon), group in groups.items():
        missing: dict[str, list[str]] = {}
        for cell in group:
            record = results.get(cell.cell_id)
            if record is None:
                why_not = cell.applicable()
                missing.setdefault(f"n/a ({why_not})" if why_not else "not run yet", []).append(cell.recipe)
                continue
            lines.append(_measured_row(profile, cell, record))
        for status, recipes in missing.items():
            lines.append(f"| {dataset} | {epsilon:g} | {status}: {', '.join(recipes)} | | | | | | | |")
        reference = results.get(reference_id(dataset))
        if reference is not None:
            lines.append(f"| {dataset} | {epsilon:g} | reference: the same classifiers on {reference['records']:,} "
                         f"real training images | none (real data) | {reference['cnn_accuracy']:.3f} | "
                         f"{reference['logistic_accuracy']:.3f} | | | | `{reference['reference']}` |")
        index = 0 if epsilon == 1.0 else 1
        for method, values in PUBLISHED.get(dataset, {}).items():
            lines.append(f"| {dataset} | {epsilon:g} | published: {method} | {epsilon:g} | "
                         f"{values[index]:.3f} | | | | 28x28, GPU | |")
    return "\n".join(lines)


def _measured_row(profile: str, cell: Cell, record: dict) -> str:
    compute = record["compute"]
    name = cell.recipe + (f" ({cell.public_data})" if cell.public_data else "")
    epsilon = "inf (not DP)" if not record["private"] else f"{record['epsilon']:.2f}"
    reference = record["frechet_distance_real_reference"]
    frechet = f"{record['frechet_distance']:.1f}" + (f" ({reference:.1f})" if reference is not None else "")
    minutes = f"{compute['train_minutes']:.1f} + {compute['evaluate_minutes']:.1f}"
    bound = PROFILES[profile].max_minutes
    if bound and compute["total_minutes"] > bound:
        minutes += f" (over the {bound:g}-minute bound)"
    device = f"{compute['device']}, {compute['torch_threads']} thread(s)"
    return (f"| {cell.dataset} | {cell.epsilon:g} | {name} | {epsilon} | **{record['cnn_accuracy']:.3f}** | "
            f"{record['logistic_accuracy']:.3f} | {frechet} | {minutes} | {device} | `{cell.cell_id}` |")


def render_student_table(profile: str, results: dict[str, dict]) -> str:
    """Markdown: each few-step student against its own teacher sampled with DDIM, from the same run."""
    lines = ["| dataset | target epsilon | generator | network evaluations per image | CNN accuracy | "
             "Frechet distance | memorisation (DCR share) | images per second | student training minutes | cell |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for cell in cells(profile):
        if cell.recipe not in STUDENT_RECIPES:
            continue
        record = results.get(cell.cell_id)
        if record is None or not record.get("student_vs_teacher"):
            lines.append(f"| {cell.dataset} | {cell.epsilon:g} | not run yet | | | | | | | `{cell.cell_id}` |")
            continue
        comparison = record["student_vs_teacher"]
        for role in ("student", "teacher"):
            numbers = comparison[role]
            speed = numbers["images_per_second"]
            if role == "student":
                speed_text = f"{speed:,.0f} ({speed / comparison['teacher']['images_per_second']:.1f}x)"
                minutes = f"{comparison['student_train_minutes']:.1f}"
            else:
                speed_text, minutes = f"{speed:,.0f}", ""
            lines.append(f"| {cell.dataset} | {cell.epsilon:g} | {numbers['generator']} | {numbers['sample_steps']} | "
                         f"{numbers['cnn_accuracy']:.3f} | {numbers['frechet_distance']:.1f} | "
                         f"{numbers['dcr_share']:.3f} | {speed_text} | {minutes} | `{cell.cell_id}` |")
    return "\n".join(lines)


def write_docs(profile: str, table: str, docs: Path = DOCS, marker: str = "table") -> None:
    """Replace the text between ``<!-- MARKER:PROFILE -->`` and ``<!-- /MARKER:PROFILE -->`` in the doc."""
    start, end = f"<!-- {marker}:{profile} -->", f"<!-- /{marker}:{profile} -->"
    text = docs.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{docs} has no {start} ... {end} markers: add them where the table belongs")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    docs.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate cells")
    run.add_argument("--profile", choices=sorted(PROFILES), required=True)
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--cell", action="append", help="a cell id (repeat for several)")
    which.add_argument("--missing", action="store_true", help="every applicable cell without a result")
    run.add_argument("--workspace", help="runs and the feature-classifier cache (default: a temporary folder)")
    run.add_argument("--results", default=str(RESULTS))
    run.add_argument("--device", default="auto")
    run.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    run.add_argument("--seed", type=int, default=0)
    ref = sub.add_parser("reference", help="the cells' classifiers trained on real images (the ceiling)")
    ref.add_argument("--profile", choices=sorted(PROFILES), required=True)
    ref.add_argument("--dataset", action="append", help="a dataset (default: every one of the profile)")
    ref.add_argument("--results", default=str(RESULTS))
    ref.add_argument("--seed", type=int, default=0)
    ref.add_argument("--cnn-epochs", type=int, help="CNN epochs (default: the profile's; more shows how far the "
                                                       "profile's CNN is from converged)")
    ref.add_argument("--cnn-min-steps", type=int, help="at least this many CNN steps (default: the profile's)")
    ref.add_argument("--per-class", type=int, help="real images per class (default: the profile's)")
    show = sub.add_parser("table", help="print the markdown table of a profile's results")
    show.add_argument("--profile", choices=sorted(PROFILES), required=True)
    show.add_argument("--results", default=str(RESULTS))
    show.add_argument("--write-docs", action="store_true", help="also put it between the markers in docs/benchmarks.md")
    args = parser.parse_args(argv)

    results = Path(args.results)
    if args.command == "reference":
        for dataset in args.dataset or PROFILES[args.profile].datasets:
            if not DATASETS[dataset].available():
                print(f"# {dataset}: skipped ({DATASETS[dataset].train} is absent)", file=sys.stderr)
                continue
            record = run_reference(dataset, args.profile, results=results, seed=args.seed, cnn_epochs=args.cnn_epochs,
                                   cnn_min_steps=args.cnn_min_steps, per_class=args.per_class)
            print(json.dumps({k: record[k] for k in ("reference", "records", "cnn_accuracy", "logistic_accuracy")}),
                  flush=True)
        return 0
    if args.command == "table":
        loaded = load_results(results, args.profile)
        table, students = render_table(args.profile, loaded), render_student_table(args.profile, loaded)
        print(f"{table}\n\n{students}")
        if args.write_docs:
            write_docs(args.profile, table)
            write_docs(args.profile, students, marker="students")
        return 0

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    done = load_results(results, args.profile)
    todo = [find_cell(args.profile, c) for c in args.cell] if args.cell else \
        [c for c in cells(args.profile) if c.cell_id not in done and c.applicable() is None]
    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="dpsad-table-"))
    for cell in todo:
        if cell.applicable():
            print(f"# {cell.cell_id}: skipped ({cell.applicable()})", file=sys.stderr)
            continue
        if not DATASETS[cell.dataset].available():
            print(f"# {cell.cell_id}: skipped ({DATASETS[cell.dataset].train} is absent)", file=sys.stderr)
            continue
        record = run_cell(cell, workspace=workspace, results=results, device=args.device, seed=args.seed)
        print(json.dumps({k: record[k] for k in ("cell", "epsilon", "cnn_accuracy", "frechet_distance")}
                         | {"minutes": record["compute"]["total_minutes"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
