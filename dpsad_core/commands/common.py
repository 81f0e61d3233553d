"""Helpers shared by every ``dpsad-core`` sub-command module."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_workspace_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--workspace", metavar="DIR",
                     help="where runs and datasets live (default: $DPSAD_WORKSPACE or your user data folder)")


def workspace_from_args(args: argparse.Namespace) -> Path:
    from dpsad_core.paths import workspace_dir

    path = workspace_dir(args.workspace)
    path.mkdir(parents=True, exist_ok=True)
    return path


def print_json(obj: Any) -> None:
    print(json.dumps(obj, sort_keys=True, default=str))
