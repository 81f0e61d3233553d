"""Helpers shared by every ``dpsad-core`` sub-command module."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from dpsad_core.errors import ConfigError


def add_workspace_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--workspace", metavar="DIR",
                     help="where runs and datasets live (default: $DPSAD_WORKSPACE or your user data folder)")


def add_seed_options(sub: argparse.ArgumentParser, *, public_use: str, default: int | None = 0) -> None:
    """``--seed`` (public randomness) and ``--privacy-seed`` (reproducible noise, voids the guarantee)."""
    from dpsad_core.commands.options import seed

    sub.add_argument("--seed", type=seed(), default=default,
                     help=f"seed of the public randomness only ({public_use}); the noise and the sampling that "
                          "the guarantee rests on are always secret and fresh")
    sub.add_argument("--privacy-seed", type=seed("--privacy-seed"), metavar="SEED",
                     help="draw the noise and the sampling from this known seed, for reproducible tests and "
                          "research: the run is then NOT differentially private (epsilon = infinity) and export "
                          "needs --research")


def workspace_from_args(args: argparse.Namespace) -> Path:
    from dpsad_core.paths import workspace_dir

    path = workspace_dir(args.workspace)
    path.mkdir(parents=True, exist_ok=True)
    return path


def print_json(obj: Any) -> None:
    print(json.dumps(obj, sort_keys=True, default=str))


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}", field="set", value=pair,
                              remedy="e.g. --set denoiser_steps=500")
        overrides[key.strip()] = value.strip()
    return overrides


def stop_flag():
    """SIGTERM/SIGINT ask the engine to checkpoint and stop at the next step; a second SIGINT aborts."""
    requested = {"stop": False}

    def handler(signum, frame) -> None:
        if requested["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested["stop"] = True
        print("\ndpsad-core: stopping after this step and writing a checkpoint...", file=sys.stderr)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return lambda: requested["stop"]
