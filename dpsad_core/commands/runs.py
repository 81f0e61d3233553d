"""``dpsad-core runs``: the runs in the workspace with their state, recipe and epsilon."""

from __future__ import annotations

import argparse

from dpsad_core.commands.common import (
    add_workspace_option,
    print_json,
    workspace_from_args,
)


def register(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("runs", help="list runs with their state, recipe and epsilon")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_runs)


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
