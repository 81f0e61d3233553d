"""``dpsad-core train`` (a plan, a run, a resume, N workers) and ``demo`` (the embedded digits, end to end)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dpsad_core.commands import options as typed
from dpsad_core.commands.common import (
    add_seed_options,
    add_workspace_option,
    parse_overrides,
    print_json,
    stop_flag,
    workspace_from_args,
)
from dpsad_core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ConfigError


def register(commands: argparse._SubParsersAction) -> None:
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
                     help="override one preset setting, e.g. --set denoiser_steps=500 (repeatable)")
    sub.add_argument("--plan", action="store_true", help="print the privacy plan and stop without training")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="end with one JSON object on the last line of stdout")
    sub.set_defaults(handler=_cmd_train)


    sub = commands.add_parser("demo", help="train on the embedded digits dataset and write a sample grid",
                              description="Trains the dpsad-public-teacher recipe on scikit-learn's 1,500 8x8 "
                                          "digits (treated as private), with a teacher trained on generated font "
                                          "digits (public), and writes a sample grid. A few minutes on 2 cores.")
    sub.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    sub.add_argument("--epsilon", type=typed.epsilon(), default=10.0)
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_demo)


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

    return RunFolder.open(workspace, run_ref).config().workers


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
              f"expected batch {phase.expected_batch_size:g} (sample rate {phase.sample_rate:.4f}), {noise}"
              f"{phase_time_text(estimate, phase)}")
    eps = plan.planned_epsilon.get("certified")
    print(f"  planned epsilon: {'infinity: NOT differentially private' if eps is None else f'{eps:.4f}'}"
          f"{'' if eps is None else ' (the smaller of the RDP and PRV bounds, as the finished run certifies)'}")
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
