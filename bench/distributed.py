"""Distributed DP-SGD throughput: 2 workers x 1 thread against 1 worker x 2 threads, in one run.

Both configurations train the same dpdm plan on the demo digits (8 x 8) for ``--steps`` DP steps
and report the engine's own training time (``train_seconds``: the steps only, without start-up,
planning or sample grids). They alternate ``--repeats`` times so that load on a shared machine hits
both alike; the ratio of medians is the all-reduce overhead (target within 10%).

Usage: python bench/distributed.py [--preset quick] [--steps 20] [--repeats 2]
Prints one Markdown row per configuration and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def train_seconds(workers: int, threads: int, preset: str, steps: int, workspace: str) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), DPSAD_WORKSPACE=workspace)
    command = [sys.executable, "-m", "dpsad_core", "train", "--data", "demo", "--recipe", "dpdm", "--preset", preset,
               "--device", "cpu", "--max-steps", str(steps), "--set", "sample_every=100000", "--json",
               "--nproc", str(workers)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["train_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"2 workers x 1 thread": [], "1 worker x 2 threads": []}
    with tempfile.TemporaryDirectory() as workspace:
        for _ in range(args.repeats):
            times["2 workers x 1 thread"].append(train_seconds(2, 1, args.preset, args.steps, workspace))
            times["1 worker x 2 threads"].append(train_seconds(1, 2, args.preset, args.steps, workspace))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"| {name} | {args.preset} | {args.steps} | {median / args.steps * 1000:.0f} ms/step |")
    ratio = medians["2 workers x 1 thread"] / medians["1 worker x 2 threads"]
    print(json.dumps({"preset": args.preset, "steps": args.steps, "repeats": args.repeats,
                      "seconds": times, "ratio_2x1_over_1x2": round(ratio, 3)}))


if __name__ == "__main__":
    main()
