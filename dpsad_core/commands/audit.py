"""``dpsad-core audit``: the one-run empirical privacy audit (Steinke, Nasr and Jagielski 2023).

Trains the recipe under test on the data plus canaries (each included with probability 1/2), scores
the canaries from the released model and prints the empirical lower bound on epsilon beside the
certified epsilon of the same run. ``--run RUN`` scores an audit run that was interrupted and then
resumed with ``dpsad-core train --resume RUN``.
"""

from __future__ import annotations

import argparse
from typing import Any

from dpsad_core.commands import options as typed
from dpsad_core.commands.common import add_workspace_option, parse_overrides, print_json, stop_flag, workspace_from_args
from dpsad_core.errors import EXIT_INTERRUPTED, ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the ``dpsad-core`` parser."""
    sub = commands.add_parser(
        "audit", help="measure an empirical lower bound on epsilon with canaries (one training run)",
        description="Adds m canary records to the data, each with probability 1/2, trains the recipe once, guesses "
                    "from the released model which canaries were trained on, and reports the largest epsilon "
                    "those guesses refute at the given confidence (Steinke, Nasr, Jagielski 2023). The result is "
                    "a LOWER bound: a low value does not prove privacy.")
    from dpsad_core.training.config import Recipe

    sub.add_argument("--recipe", choices=[r.value for r in Recipe],
                     help="recipe under test (default: dpsad-public-teacher with --public-data, else dpsad)")
    sub.add_argument("--data", help="'demo', a saved dataset name, or a path")
    sub.add_argument("--epsilon", type=typed.epsilon(), default=10.0,
                     help="target epsilon of the audited run (default 10)")
    sub.add_argument("--delta", type=typed.delta(), help="target delta (default min(1e-5, 0.1/N))")
    sub.add_argument("--canaries", type=int, default=200, help="number of canaries m (default 200)")
    sub.add_argument("--canary-kind", default="pattern", choices=["pattern", "mislabelled"],
                     help="pattern: random binary images with random labels; mislabelled: records of the data "
                          "with a wrong label (default pattern)")
    sub.add_argument("--score-draws", type=int, default=64,
                     help="(t, eps) draws averaged in each canary's denoising-loss score (default 64)")
    sub.add_argument("--guesses", type=int, metavar="K",
                     help="guess on exactly K canaries per side, fixed up front (default: try five settings and "
                          "correct the confidence for the tries)")
    sub.add_argument("--confidence", type=typed.number("--confidence", above=0.0, below=1.0), default=0.95,
                     help="confidence of the lower bound (default 0.95)")
    sub.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    sub.add_argument("--max-steps", type=int, help="stop each phase after this many steps")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one preset setting")
    sub.add_argument("--public-data", help="public data for dpsad-public-teacher (or dpdm pre-training)")
    sub.add_argument("--resolution", type=int, help="resize images to this size")
    sub.add_argument("--min-records", type=int, default=100, help="refuse datasets with fewer privacy units")
    sub.add_argument("--seed", type=typed.seed(),
                     help="a known seed for the canaries, their inclusion and the scoring, for a reproducible audit "
                          "(default: canaries and inclusion from fresh OS entropy, never recorded)")
    sub.add_argument("--train-seed", type=typed.seed("--train-seed"), default=0,
                     help="public seed of the training run (initialisation); its noise is always secret")
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sub.add_argument("--run", metavar="RUN", help="score an existing, finished audit run instead of training one")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="end with one JSON object on the last line of stdout")
    sub.set_defaults(handler=_cmd_audit)


def _cmd_audit(args: argparse.Namespace) -> int:
    from dpsad_core.evaluation.audit_run import score_audit_run

    workspace = workspace_from_args(args)
    if args.run:
        report = score_audit_run(args.run, workspace=workspace, device=args.device)
        _print_report(report, json_out=args.json)
        return 0
    if not args.data:
        raise ConfigError("no data given", field="data", remedy="pass --data demo, a dataset name, or a path")
    return _train_and_audit(args, workspace)


def _train_and_audit(args: argparse.Namespace, workspace) -> int:
    from dpsad_core.commands.progress import show_progress
    from dpsad_core.evaluation.audit_run import AuditFinished, AuditSettings, run_audit
    from dpsad_core.events import RunInterrupted
    from dpsad_core.training import TrainConfig, resolve_hyperparameters
    from dpsad_core.training.config import Recipe

    settings = AuditSettings(canaries=args.canaries, canary_kind=args.canary_kind, score_draws=args.score_draws,
                             confidence=args.confidence, guesses_per_side=args.guesses, seed=args.seed)
    hyper = resolve_hyperparameters(args.preset, parse_overrides(args.set))
    recipe = Recipe(args.recipe or ("dpsad-public-teacher" if args.public_data else "dpsad"))
    config = TrainConfig(data=args.data, recipe=recipe, epsilon=args.epsilon, delta=args.delta, preset=args.preset,
                         hyper=hyper, public_data=args.public_data, max_steps=args.max_steps,
                         resolution=args.resolution, seed=args.train_seed, device=args.device,
                         min_records=args.min_records)
    for event in show_progress(run_audit(config, settings, workspace=workspace, stop=stop_flag()),
                               interrupted=_audit_hint):
        if isinstance(event, RunInterrupted):
            return EXIT_INTERRUPTED
        if isinstance(event, AuditFinished):
            _print_report(event.report, json_out=args.json)
    return 0


def _audit_hint(event) -> str:
    return (f"audit run {event.run_id} stopped at {event.phase} step {event.step}; finish it with: "
            f"dpsad-core train --resume {event.run_id}, then dpsad-core audit --run {event.run_id}")


def _print_report(report: dict[str, Any], *, json_out: bool) -> None:
    if json_out:
        print_json(report)
        return
    bound = report["bound"]
    best = bound["best"]
    certified = report["epsilon_certified"]
    print(f"audit of run {report['run_id']} (recipe {report['recipe']}, delta {report['delta']:.3g}):")
    print(f"  empirical lower bound on epsilon: {report['epsilon_lower_bound']:.3f} "
          f"(confidence {bound['confidence']:g}; {best['correct']}/{best['guesses']} guesses right on "
          f"{bound['canaries']} canaries; multiple testing: {bound['multiple_testing']})")
    if certified is None:
        print("  certified epsilon:               infinity (NOT differentially private)")
        if report.get("epsilon_claimed_paper") is not None:
            print(f"  epsilon claimed by the paper:     {report['epsilon_claimed_paper']:.3f} (a claim, not a proof)"
                  + ("; the audit REFUTES it" if report.get("refutes_claim") else ""))
    else:
        print(f"  certified epsilon:               {certified:.3f}")
        if not report["consistent"]:
            print("  WARNING: the lower bound exceeds the certified epsilon: the privacy guarantee of this "
                  f"recipe does not hold as computed (or a false alarm, chance {1 - bound['confidence']:.0%}); "
                  "please report it")
    print(f"  note: {report['note']}")
