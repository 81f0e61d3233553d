"""What publishing N as a noisy count costs the analyst (docs/privacy.md, "N: a noisy count, unless declared").

For each N, at the default settings (``--preset quick``, the default recipe, ``--epsilon 10``, the default
delta), it prints:

- the count's epsilon alone (Gaussian, sensitivity 1, sigma ``--sigma``, one release; RDP and PRV);
- what it adds to the run: the training mechanisms calibrated *without* the count, composed with and
  without it (RDP and PRV), and how much more training noise the planner needs to fit the count in;
- the published N's error: ``--draws`` simulated draws of floor-to-2-significant-figures(max(N + noise, 1)),
  the mean and 95th percentile of |N_published - N| / N, and how often N_published > N.

Usage: python bench/noisy_count.py [--sizes 1500 60000] [--sigma 100] [--draws 200000]
Prints one Markdown row per N and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from dpsad_core.data.public_metadata import published_units
from dpsad_core.privacy import compute_epsilon
from dpsad_core.privacy.calibration import default_delta
from dpsad_core.privacy.noisy_count import count_mechanism
from dpsad_core.training import plan_training, resolve_hyperparameters
from dpsad_core.training.config import DEFAULT_RECIPE


def measure(units: int, sigma: float, draws: int, epsilon: float, preset: str) -> dict:
    hyper = resolve_hyperparameters(preset)
    delta = default_delta(published_units(units, declared=False))
    count = count_mechanism(sigma)
    without = plan_training(recipe=DEFAULT_RECIPE, hyper=hyper, epsilon=epsilon, delta=delta, private_units=units)
    with_count = plan_training(recipe=DEFAULT_RECIPE, hyper=hyper, epsilon=epsilon, delta=delta, private_units=units,
                               count=count, units_from="rounded")
    training = without.mechanisms(hyper)
    alone = compute_epsilon([count], delta=delta, accountants=("rdp", "prv"))
    before = compute_epsilon(training, delta=delta, accountants=("rdp", "prv"))
    after = compute_epsilon([count, *training], delta=delta, accountants=("rdp", "prv"))
    noisy = units + np.random.default_rng(0).normal(0.0, sigma, draws)
    published = np.array([published_units(max(1, math.floor(value)), declared=False) for value in noisy])
    error = np.abs(published - units) / units
    dp_phases = [p for p in without.phases if p.privacy == "dp"]
    dp_phases_count = [p for p in with_count.phases if p.privacy == "dp"]
    return {"units": units, "sigma": sigma, "delta": delta, "recipe": DEFAULT_RECIPE.value, "preset": preset,
            "count_alone_rdp": alone.rdp, "count_alone_prv": alone.prv,
            "training_rdp": before.rdp, "training_prv": before.prv,
            "added_rdp": after.rdp - before.rdp, "added_prv": after.prv - before.prv,
            "training_sigma": dp_phases[0].noise_multiplier,
            "training_sigma_with_count": dp_phases_count[0].noise_multiplier,
            "mean_relative_error": float(error.mean()), "p95_relative_error": float(np.quantile(error, 0.95)),
            "share_above_n": float((published > units).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1500, 60000])
    parser.add_argument("--sigma", type=float, default=100.0)
    parser.add_argument("--draws", type=int, default=200_000)
    parser.add_argument("--epsilon", type=float, default=10.0)
    parser.add_argument("--preset", default="quick")
    args = parser.parse_args()
    rows = [measure(units, args.sigma, args.draws, args.epsilon, args.preset) for units in args.sizes]
    print("| N | count alone (RDP / PRV) | added to the run (RDP / PRV) | training sigma without / with | "
          "mean / p95 relative error of N | published > N |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['units']:,} | {r['count_alone_rdp']:.3g} / {r['count_alone_prv']:.3g} | "
              f"{r['added_rdp']:.2g} / {r['added_prv']:.2g} | {r['training_sigma']:.4g} / "
              f"{r['training_sigma_with_count']:.4g} | {r['mean_relative_error']:.2%} / "
              f"{r['p95_relative_error']:.2%} | {r['share_above_n']:.0%} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
