"""``dpsad-core``: the headless command line over dpsad_core.

Every user mistake ends as one line on stderr and an exit code per error class (see errors.py);
set ``DPSAD_DEBUG=1`` to see tracebacks. Long work shows a progress bar on stderr; ``--json`` prints
one JSON object on the last line of stdout for scripts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from dpsad_core.commands import COMMAND_MODULES
from dpsad_core.commands import options as typed
from dpsad_core.commands.common import (
    add_seed_options,
    add_workspace_option,
    parse_overrides,
    print_json,
    stop_flag,
    workspace_from_args,
)
from dpsad_core.commands.workers import add_worker_options, run_with_workers
from dpsad_core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ConfigError, classify
from dpsad_core.export.layout import NOT_DP_STAMP


def main(argv: list[str] | None = None) -> int:
    """Run one command; the only place where exceptions become exit codes (table: errors.EXIT_CODES)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # typed options (commands/options.py) raise ConfigError here
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what --nproc hands to its workers
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("dpsad-core: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - last line of defence: one line, not a traceback
        known = classify(error)  # our errors, and what the OS says (disk full, read-only, ...)
        if known is not None:
            if os.environ.get("DPSAD_DEBUG") and known is not error:
                raise
            print(f"dpsad-core: error: {known}", file=sys.stderr)
            return known.exit_code
        if os.environ.get("DPSAD_DEBUG"):
            raise
        print(f"dpsad-core: internal error: {type(error).__name__}: {error} "
              "(set DPSAD_DEBUG=1 to see the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpsad-core",
        description="Turn a private labelled image collection into a differentially private image generator "
                    "and synthetic data, with a privacy guarantee that covers every part that reads the data.",
        epilog="Start with: dpsad-core demo   (trains on a small digits dataset that ships with scikit-learn)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    sub = commands.add_parser("import", help="read a dataset, check it, and save it in the workspace",
                              description="Formats: a folder with one subfolder per class (PNG, JPEG, BMP, TIFF, "
                                          "DICOM); a CSV manifest (path,label[,patient_id]); MNIST IDX files; "
                                          "a MedMNIST .npz.",
                              epilog="Sizes are capped (pixels per image, records, classes, data bytes); the "
                                     "DPSAD_MAX_* environment variables raise the caps: see docs/limits.md.")
    sub.add_argument("path", help="folder, .csv, IDX file or folder, or .npz")
    sub.add_argument("--name", help="name to save it under (default: derived from the path)")
    sub.add_argument("--split", default="train", help="split for IDX (train/test) and .npz (train/val/test) files")
    _data_options(sub)
    sub.add_argument("--duplicates", choices=["refuse", "merge", "drop"], default="refuse",
                     help="records that repeat another exactly: refuse the import (default), merge each group into "
                          "one privacy unit, or drop all but the first copy")
    sub.add_argument("--classes", metavar="A,B,C",
                     help="the class names, in label order, that you declare public (required for class folders, "
                          "CSV manifests and DICOM; records with another label are refused)")
    sub.add_argument("--public-count", action="store_true",
                     help="declare the number of records public: reports then state it exactly (otherwise a run "
                          "publishes a noisy count, spent from the budget, rounded down to 2 significant figures, "
                          "and computes the sample rate from that)")
    sub.add_argument("--public", action="store_true",
                     help="declare the data public: it may then train a DP-RDM public model (rdm train-public); "
                          "data first seen as private stays private")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")
    sub.set_defaults(handler=_cmd_import)

    sub = commands.add_parser("datasets", help="list the datasets saved in the workspace")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_datasets)

    from dpsad_core.training.config import DEFAULT_RECIPE, Recipe

    sub = commands.add_parser("train", help="train a private image generator",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Recipes (the default is the best sound recipe measured, see "
                                          "docs/benchmarks.md):\n" + "\n".join(
                                              f"  {r.value}: {r.description}" for r in Recipe))
    sub.add_argument("--data", help="'demo', a dataset name from 'dpsad-core datasets', or a path to import")
    sub.add_argument("--recipe", choices=[r.value for r in Recipe], help=f"default: {DEFAULT_RECIPE.value}")
    sub.add_argument("--epsilon", type=typed.epsilon(), default=10.0,
                     help="target epsilon for the whole run (default 10)")
    sub.add_argument("--delta", type=typed.delta(), help="target delta (default min(1e-5, 0.1/N))")
    sub.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    uses = "; ".join(f"{r.value}: {r.public_data_use}" for r in Recipe if r.public_data_use)
    sub.add_argument("--public-data", help=f"data you may treat as public, with the private data's classes ({uses}). "
                                           "A path, a saved dataset, or 'rendered-digits' (generated font digits)")
    sub.add_argument("--allow-public-overlap", action="store_true",
                     help="research only: use --public-data even though it shares records with the private data; "
                          "the run is then reported NOT differentially private (epsilon = infinity)")
    sub.add_argument("--max-steps", type=typed.integer("--max-steps", minimum=0),
                     help="stop each phase after this many steps (epsilon reports what was actually spent)")
    sub.add_argument("--resume", metavar="RUN", help="continue an interrupted run (id or folder)")
    sub.add_argument("--device",
                     help="where each worker trains: auto (a GPU when there is one, else the CPU), cpu, cuda "
                          "(with several workers: one GPU per worker, cuda:LOCAL_RANK), or cuda:K. Default: auto, "
                          "or with --resume the device the run was started on (a checkpoint continues on any)")
    sub.add_argument("--nproc", type=int, metavar="N",
                     help="train with N worker processes on this machine, started by torch's elastic launcher "
                          "(gloo on CPU, one GPU each with --device cuda): the same mechanism, subsample, noise "
                          "and epsilon as one process. Default: 1, or as many as the run was started with when "
                          "resuming. Across machines, use torchrun (docs/distributed.md)")
    sub.add_argument("--run-id", help=argparse.SUPPRESS)  # chosen by the --nproc launcher for its workers
    add_seed_options(sub, public_use="model initialisation and sample grids")
    sub.add_argument("--resolution", type=typed.integer("--resolution", minimum=1),
                     help="resize images to this size (e.g. 16, 28, 32)")
    sub.add_argument("--min-records", type=typed.integer("--min-records", minimum=0), default=100,
                     help="refuse datasets with fewer privacy units")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one preset setting, e.g. --set teacher_steps=500 (repeatable)")
    sub.add_argument("--plan", action="store_true", help="print the privacy plan and stop without training")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="end with one JSON object on the last line of stdout")
    sub.set_defaults(handler=_cmd_train)

    sub = commands.add_parser("sample", help="draw images from a finished run's released model")
    sub.add_argument("run", help="run id or folder")
    sub.add_argument("--per-class", type=typed.images_per_class(maximum=typed.MAX_GRID_PER_CLASS), default=8,
                     help="images per class (default 8)")
    sub.add_argument("--out", help="PNG path for the grid (default: the run's samples/grid.png)")
    sub.add_argument("--npz", help="also save the images and labels as .npz here")
    sub.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    sub.add_argument("--steps", type=typed.sampler_steps(), help="DDIM steps (default: the run's setting)")
    sub.add_argument("--generator", default="release", choices=["release", "teacher"],
                     help="which network samples: release (the run's released model; for the dpsad recipe its few-step "
                          "student) or teacher (the DP teacher a student was distilled from, with DDIM)")
    sub.add_argument("--guidance", type=typed.guidance(), help="classifier-free guidance weight (default: the run's)")
    sub.add_argument("--seed", type=typed.seed(), default=0)
    add_worker_options(sub, work="sample")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_sample)

    sub = commands.add_parser("runs", help="list runs with their state, recipe and epsilon")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_runs)

    sub = commands.add_parser("demo", help="train on the embedded digits dataset and write a sample grid",
                              description="Trains the dpsad-public-teacher recipe on scikit-learn's 1,500 8x8 "
                                          "digits (treated as private), with a teacher trained on generated font "
                                          "digits (public), and writes a sample grid. A few minutes on 2 cores.")
    sub.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    sub.add_argument("--epsilon", type=typed.epsilon(), default=10.0)
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_demo)

    for name in COMMAND_MODULES:
        importlib.import_module(f"dpsad_core.commands.{name}").register(commands)
    return parser


def _data_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--resolution", type=typed.integer("--resolution", minimum=1),
                     help="resize every image to this size")
    sub.add_argument("--grey", action="store_true", help="convert colour images to grey")
    sub.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images and report how many")
    sub.add_argument("--min-records", type=typed.integer("--min-records", minimum=0), default=100,
                     help="refuse datasets with fewer privacy units")




# -- commands ----------------------------------------------------------------------------------------
def _cmd_import(args: argparse.Namespace) -> int:
    from dpsad_core.data import load_dataset, save_dataset
    from dpsad_core.data.public_metadata import parse_classes, rare_class_warnings
    from dpsad_core.privacy.ledger import PrivacyLedger
    from dpsad_core.privacy.ledger_datasets import ledger_identity

    dataset = load_dataset(args.path, split=args.split, resolution=args.resolution,
                           channels=1 if args.grey else None, skip_corrupt=args.skip_corrupt,
                           min_records=args.min_records, name=args.name, duplicates=args.duplicates,
                           classes=parse_classes(args.classes) if args.classes else None,
                           public_count=args.public_count)
    if dataset.class_names_from == "data":
        # Read off folder or label names: a single record could add a class to every release.
        raise ConfigError(f"the class names of {args.path!r} come from its folder or label names "
                          f"({', '.join(dataset.class_names)}): a release shows the class list, so declare it",
                          field="classes", remedy="pass the classes you may make public, e.g. --classes "
                                                  f"{','.join(dataset.class_names[:3])}")
    workspace = workspace_from_args(args)
    folder = save_dataset(dataset, workspace)
    # Compared with every dataset seen before: one that shares records shares its privacy budget.
    overlaps = PrivacyLedger(workspace).overlaps(ledger_identity(workspace, dataset, public=args.public))
    summary = dict(dataset.summary(workspace), saved_to=str(folder), overlaps=overlaps)
    if args.json:
        print_json(summary)
    else:
        print(f"imported {summary['num_records']} images in {summary['num_classes']} classes "
              f"({summary['channels']}x{summary['resolution']}x{summary['resolution']}) as '{dataset.name}'")
        print(f"  class counts: {summary['class_counts']}")
        if dataset.skipped:
            print(f"  skipped {len(dataset.skipped)} unreadable file(s)")
        if dataset.merged_duplicates:
            done = "merged into their record's privacy unit" if args.duplicates == "merge" else "dropped"
            print(f"  {dataset.merged_duplicates} exact duplicate record(s) {done}")
        for overlap in overlaps:
            print(f"  shares records with {overlap['name'] or overlap['fingerprint'][:24]}: its privacy budget is "
                  "shared (see dpsad-core ledger)")
        for warning in rare_class_warnings(dataset):
            print(f"  warning: {warning}")
        print(f"  fingerprint:  {summary['fingerprint']}")
        print(f"  saved to:     {folder}")
        print(f"train on it with: dpsad-core train --data {dataset.name} --epsilon 10")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from dpsad_core.data import list_saved_datasets

    datasets = list_saved_datasets(workspace_from_args(args))
    if args.json:
        print_json(datasets)
        return 0
    if not datasets:
        print("no datasets yet: import one with 'dpsad-core import PATH'")
    for d in datasets:
        print(f"{d['name']:<32} {d['num_records']:>7} records  {d['num_classes']:>3} classes  {d['fingerprint'][:28]}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dpsad_core import distributed
    from dpsad_core.training import (
        DEFAULT_RECIPE,
        Recipe,
        TrainConfig,
        resolve_hyperparameters,
        resume_training,
        start_training,
    )

    workspace = workspace_from_args(args)
    if args.nproc is not None and args.nproc < 1:
        raise ConfigError("--nproc must be at least 1", field="nproc", value=args.nproc)
    if not args.data and not args.resume:
        raise ConfigError("no data given", field="data", remedy="pass --data demo, a dataset name, or a path")
    solo = getattr(args, "solo", False)
    if distributed.launched_by_torch() and not solo:
        return _train_worker(args)
    nproc = 1 if solo else args.nproc if args.nproc is not None else _workers_of(args.resume, workspace)
    if nproc > 1 and not args.plan:
        from dpsad_core.devices import check_gpus_for
        from dpsad_core.training.launch import launch_local

        check_gpus_for(nproc, args.device or "auto")
        from dpsad_core.runs.folder import RunFolder, new_run_id

        run_id = RunFolder.open(workspace, args.resume).run_id if args.resume else new_run_id(args.recipe or "dpdm")
        extra = [] if args.resume else ["--run-id", run_id]
        return launch_local([*args.argv, *extra, "--workspace", str(workspace)], nproc=nproc, run_id=run_id,
                            workspace=workspace)
    if args.resume:
        return _consume(resume_training(args.resume, workspace=workspace, stop=stop_flag(), device=args.device),
                        json_out=args.json)
    hyper = resolve_hyperparameters(args.preset, parse_overrides(args.set))
    recipe = Recipe(args.recipe) if args.recipe else DEFAULT_RECIPE
    config = TrainConfig(data=args.data, recipe=recipe, epsilon=args.epsilon, delta=args.delta,
                         preset=args.preset, hyper=hyper, public_data=args.public_data, max_steps=args.max_steps,
                         resolution=args.resolution, seed=args.seed, privacy_seed=args.privacy_seed,
                         device=args.device or "auto", min_records=args.min_records,
                         allow_public_overlap=args.allow_public_overlap)
    if args.plan:
        from dpsad_core.data.public_metadata import rare_class_warnings
        from dpsad_core.training import prepare_run
        from dpsad_core.training.budget import budget_outlook

        dataset, _, plan = prepare_run(config, workspace=workspace, plan_only=True)
        budget = budget_outlook(config, dataset, plan, workspace)
        local = rare_class_warnings(dataset)  # states class sizes: shown here, never part of the exported plan
        from dpsad_core.commands.plan_time import plan_time

        estimate = plan_time(config, dataset, plan)  # the New run screen's estimator: one step timed here
        if args.json:
            print_json(dict(plan.to_dict(), budget=budget, local_warnings=local, estimate=estimate))
        else:
            _print_plan(plan, estimate)
            for warning in local:
                print(f"  warning (local, not exported): {warning}")
            _print_budget(budget)
        return 0
    return _consume(start_training(config, workspace=workspace, stop=stop_flag(), run_id=args.run_id),
                    json_out=args.json)


def _workers_of(run_ref: str | None, workspace: Path) -> int:
    """How many workers a resumed run was started with (1 for a new run)."""
    if not run_ref:
        return 1
    from dpsad_core.training import RunFolder

    return int(RunFolder.open(workspace, run_ref).read_json("config.json").get("workers", 1))


def _train_worker(args: argparse.Namespace) -> int:
    """One worker under torchrun / the elastic launcher: join the group, train, only rank 0 reports."""
    from dpsad_core import distributed
    from dpsad_core.devices import resolve_device

    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if args.nproc is not None and args.nproc != local:
        raise ConfigError(f"--nproc {args.nproc} disagrees with the launcher's {local} workers on this machine",
                          field="nproc", value=args.nproc, remedy="leave --nproc out under torchrun")
    world = distributed.init_world(resolve_device(args.device or "auto"))
    try:
        if world.is_leader:
            return _cmd_train(_as_solo(args))
        with open(os.devnull, "w") as quiet:  # progress and results are rank 0's to print
            import contextlib

            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                return _cmd_train(_as_solo(args))
    finally:
        distributed.shutdown_world()


def _as_solo(args: argparse.Namespace) -> argparse.Namespace:
    """The worker's own arguments, marked so that _cmd_train trains instead of launching again."""
    return argparse.Namespace(**dict(vars(args), solo=True))


def _cmd_demo(args: argparse.Namespace) -> int:
    from dpsad_core.training import Recipe, TrainConfig, resolve_hyperparameters, start_training

    # The embedded digits are only 1,500 records: too few to learn digit shapes under DP from scratch
    # (docs/benchmarks.md). The teacher learns them from generated font digits, which are public.
    config = TrainConfig(data="demo", recipe=Recipe.DPSAD_PUBLIC_TEACHER, public_data="rendered-digits",
                         epsilon=args.epsilon, preset=args.preset, hyper=resolve_hyperparameters(args.preset))
    from dpsad_core.commands.export import demo_export_and_verify
    from dpsad_core.events import RunFinished

    workspace = workspace_from_args(args)
    finished: dict[str, Any] = {}

    def events():
        for event in start_training(config, workspace=workspace, stop=stop_flag()):
            if isinstance(event, RunFinished):
                finished["result"] = event.result
            yield event

    # The demo ends like an analyst's work does: a signed bundle, verified (issue 3). With --json the
    # last line of stdout stays one JSON object: the training result plus where the bundle went.
    code = _consume(events(), json_out=False) if not args.json else _consume_quietly(events())
    if code != 0 or "result" not in finished:
        return code
    return demo_export_and_verify(finished["result"], workspace=workspace, json_out=args.json)


def _consume_quietly(events) -> int:
    """``_consume`` with its human summary sent to stderr, so stdout can end with one JSON object."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        return _consume(events, json_out=False)


def _cmd_sample(args: argparse.Namespace) -> int:
    return run_with_workers(args, _sample_here, "sample")


def _sample_here(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from dpsad_core.devices import resolve_device
    from dpsad_core.runs.folder import release_privacy
    from dpsad_core.sampling import (
        generate,
        grid_image,
        load_released_model,
        sampler_times,
        save_png,
        stamp_not_private,
        to_uint8,
    )
    from dpsad_core.training import RunFolder

    out = typed.output_file(args.out, "--out") if args.out else None  # a folder given: refused before sampling
    npz = typed.output_file(args.npz, "--npz") if args.npz else None
    run = RunFolder.open(workspace_from_args(args), args.run)
    device = resolve_device(args.device)
    model, schedule, meta = load_released_model(run.model_path, device, generator=args.generator)
    steps, times = sampler_times(meta, args.steps, args.sampler)
    privacy = release_privacy(run.read_json("config.json"), {"private": meta["private"]})
    classes = len(meta["class_names"])
    labels = torch.arange(classes).repeat_interleave(args.per_class)
    config = model.config
    images = generate(model, schedule, labels=labels, image_shape=(config.image_channels, config.resolution,
                                                                    config.resolution),
                      sampler=args.sampler, steps=steps, timesteps=times,
                      guidance=meta["guidance"] if args.guidance is None else args.guidance, seed=args.seed,
                      device=device)
    pixels = to_uint8(images)
    out = out or run.path / "samples" / "grid.png"
    grid = grid_image(pixels, rows=classes)
    summary: dict[str, Any] = {"run_id": run.run_id, "grid": str(out), "count": int(labels.numel()),
                               "private": privacy["private"]}
    stamp: dict[str, Any] = {}
    if not privacy["private"]:
        grid = stamp_not_private(grid)
        summary["warning"] = (f"{NOT_DP_STAMP}: trained on the private data without protection: "
                              f"{', '.join(privacy['nonprivate_parts'])}")
        stamp = {"stamp": np.array(NOT_DP_STAMP)}
    save_png(grid, out)
    if npz is not None:
        from dpsad_core.atomic import atomic_write

        atomic_write(npz, lambda h: np.savez(h, images=pixels, labels=labels.numpy(),
                                             class_names=np.array(meta["class_names"]), **stamp))
        summary["npz"] = str(npz)
    if "warning" in summary:
        print(f"WARNING: {summary['warning']}", file=sys.stderr)
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {summary['count']} samples to {out}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from dpsad_core.training import list_runs

    runs = list_runs(workspace_from_args(args))
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print("no runs yet: start one with 'dpsad-core demo' or 'dpsad-core train --data ...'")
    for r in runs:
        epsilon = "inf (not private)" if not r["private"] else (
            f"{r['epsilon']:.3g}" if isinstance(r["epsilon"], (int, float)) else "-")
        print(f"{r['run_id']:<40} {r['state']:<12} {r['recipe']:<22} eps {epsilon:<18} {r['dataset']}")
    return 0


# -- helpers -----------------------------------------------------------------------------------------
def _print_plan(plan, estimate: dict[str, Any]) -> None:
    from dpsad_core.commands.plan_time import phase_time_text, total_time_text

    print(f"recipe {plan.recipe.value}: target epsilon {plan.epsilon_target:g}, delta {plan.delta:.3g}, "
          f"{plan.private_units} private units")
    if plan.count_mechanism is not None:
        print(f"  count     dp         the number of units, with Gaussian noise (sigma "
              f"{plan.count_mechanism['noise_multiplier']:g}, one release) and rounded down: the run plans from its "
              "own noisy count" + (", this preview from the exact one rounded" if plan.units_from == "rounded" else ""))
    for phase in plan.phases:
        noise = f"sigma {phase.noise_multiplier:.3f}" if phase.privacy == "dp" else "no noise"
        if phase.privacy == "postprocess":
            print(f"  {phase.name:<9} {phase.privacy:<10} on the teacher's own samples: {phase.steps} steps, batch "
                  f"{phase.expected_batch_size:g}; never reads the private data, so no privacy cost"
                  f"{phase_time_text(estimate, phase)}")
            continue
        print(f"  {phase.name:<9} {phase.privacy:<10} on {phase.data:<7} data: {phase.steps} steps, "
              f"expected batch {phase.expected_batch_size:g} (q={phase.sample_rate:.4f}), {noise}"
              f"{phase_time_text(estimate, phase)}")
    eps = plan.planned_epsilon.get("certified")
    print(f"  planned epsilon (RDP): {'infinity: NOT differentially private' if eps is None else f'{eps:.4f}'}")
    print(f"  {total_time_text(estimate)}")
    for warning in plan.warnings:
        print(f"  warning: {warning}")


def _print_budget(budget: dict[str, Any]) -> None:
    spent = budget["spent_epsilon"]
    spent_text = "infinity (a run on it was not differentially private)" if spent is None else f"{spent:.4g}"
    line = f"  privacy ledger: epsilon {spent_text} spent on this dataset by {budget['runs']} earlier run(s)"
    if budget["cap_epsilon"] is not None:
        line += f"; cap {budget['cap_epsilon']:g}, {budget['remaining']:.4g} left"
    print(line)
    if budget["refusal"]:
        print(f"  this run would be refused: {budget['refusal']}")


def _consume(events, *, json_out: bool) -> int:
    from dpsad_core.commands.progress import show_progress
    from dpsad_core.events import RunFinished, RunInterrupted, RunStarted

    result = None
    run_dir = None
    for event in show_progress(events):
        if isinstance(event, RunStarted):
            run_dir = event.run_dir
        elif isinstance(event, RunInterrupted):
            return EXIT_INTERRUPTED
        elif isinstance(event, RunFinished):
            result = event.result
    if result is None:  # pragma: no cover - the engine always ends with one of the two events above
        return EXIT_INTERNAL
    if json_out:
        print_json(result)
    else:
        _print_result(result, run_dir)
    return 0


def _print_result(data: dict[str, Any], run_dir) -> None:
    from dpsad_core.runs.records import RunResult

    result = RunResult.from_dict(data, source=f"the result of run {data.get('run_id')}")
    if result.private:
        values = result.accountant_values
        print(f"finished: ({result.epsilon:.4f}, {result.delta:.3g})-differentially private "
              f"[RDP {values['rdp']:.4f}, PRV {values['prv']:.4f}; unit of privacy: {result.unit_of_privacy}]")
    else:
        print("finished: NOT differentially private (epsilon = infinity): parts trained on the private data without "
              f"protection: {', '.join(result.nonprivate_parts)}")
    print(f"  run folder:  {run_dir}")
    print(f"  model:       {result.model_path}")
    print(f"  sample grid: {result.sample_grid}")
    print(f"  train time:  {result.train_seconds:.0f} s on {result.device}")


if __name__ == "__main__":
    sys.exit(main())
