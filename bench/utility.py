"""Utility benchmark: train a private generator, sample a synthetic set, train a CNN on it, test on real data.

One cell of the table in docs/benchmarks.md. Example (MNIST at epsilon 10, CPU profile):

    python bench/utility.py --data ../shared/data/mnist --test-data ../shared/data/mnist \
        --recipe dpsad-public-teacher --public-data rendered-digits --epsilon 10 --preset quick \
        --resolution 16 --per-class 1000

Prints one JSON line with the accuracy, the privacy numbers and the minutes each stage took.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from dpsad_core.data import resolve_data_source
from dpsad_core.evaluation import downstream_accuracy
from dpsad_core.events import RunFinished, StepCompleted
from dpsad_core.sampling import generate, load_released_model
from dpsad_core.training import TrainConfig, resolve_hyperparameters, start_training


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--test-data", required=True)
    parser.add_argument("--recipe", default="dpsad")
    parser.add_argument("--public-data")
    parser.add_argument("--epsilon", type=float, default=10.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--workspace")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--real-baseline", action="store_true", help="also train the CNN on as many real images")
    args = parser.parse_args()

    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="dpsad-bench-"))
    overrides = dict(pair.split("=", 1) for pair in args.set)
    config = TrainConfig(data=args.data, recipe=args.recipe, epsilon=args.epsilon, delta=args.delta,
                         preset=args.preset, hyper=resolve_hyperparameters(args.preset, overrides),
                         public_data=args.public_data, resolution=args.resolution, device=args.device)
    began = time.perf_counter()
    result, last_print = None, 0.0
    for event in start_training(config, workspace=workspace):
        if isinstance(event, StepCompleted) and time.perf_counter() - last_print > 60:
            last_print = time.perf_counter()
            print(f"# {event.phase} {event.step}/{event.total_steps} eps {event.epsilon_spent:.2f} "
                  f"{ {k: round(v, 4) for k, v in list(event.losses.items())[:2]} }", flush=True)
        if isinstance(event, RunFinished):
            result = event.result
    train_minutes = (time.perf_counter() - began) / 60

    began = time.perf_counter()
    device = result["device"]
    model, schedule, meta = load_released_model(Path(result["model_path"]), device)
    classes = len(meta["class_names"])
    labels = torch.arange(classes).repeat_interleave(args.per_class)
    shape = (model.config.image_channels, model.config.resolution, model.config.resolution)
    synthetic = (generate(model, schedule, labels=labels, image_shape=shape, steps=meta["sample_steps"],
                          guidance=meta["guidance"], seed=1, device=device).numpy() + 1) / 2
    sample_minutes = (time.perf_counter() - began) / 60

    began = time.perf_counter()
    test = resolve_data_source(args.test_data, workspace=workspace, split="test", resolution=model.config.resolution,
                               min_records=1)
    utility = downstream_accuracy(synthetic, labels.numpy(), test.images, test.labels, num_classes=classes)
    eval_minutes = (time.perf_counter() - began) / 60
    row = {
        "data": args.data, "recipe": args.recipe, "public_data": args.public_data, "preset": args.preset,
        "resolution": model.config.resolution, "epsilon_target": args.epsilon, "epsilon": result["epsilon"],
        "accountant_values": result["accountant_values"], "delta": result["delta"], "private": result["private"],
        "synthetic_images": int(labels.numel()), "downstream_accuracy": utility.test_accuracy,
        "selection": utility.to_dict(), "device": device, "train_minutes": round(train_minutes, 2),
        "sample_minutes": round(sample_minutes, 2), "eval_minutes": round(eval_minutes, 2),
        "overrides": overrides, "run_dir": result["run_dir"],
    }
    if args.real_baseline:
        real = resolve_data_source(args.data, workspace=workspace, resolution=model.config.resolution)
        subset = real.subset(range(min(len(real.labels), int(labels.numel()))))
        row["real_baseline_accuracy"] = downstream_accuracy(subset.images, subset.labels, test.images, test.labels,
                                                            num_classes=classes).test_accuracy
    print(json.dumps(row))


if __name__ == "__main__":
    main()
