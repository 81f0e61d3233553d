"""Downstream accuracy of a finished run: sample N per class, train the small CNN on them, test on real data.

    python bench/evaluate_run.py RUN_DIR --test-data demo --per-class 200

Prints one JSON line. The real test set is never used to choose the classifier's epoch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dpsad_core.data import resolve_data_source
from dpsad_core.evaluation import downstream_accuracy
from dpsad_core.sampling import generate, load_released_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--test-data", required=True)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    model, schedule, meta = load_released_model(run_dir / "model.pt")
    classes = len(meta["class_names"])
    labels = torch.arange(classes).repeat_interleave(args.per_class)
    shape = (model.config.image_channels, model.config.resolution, model.config.resolution)
    images = (generate(model, schedule, labels=labels, image_shape=shape, steps=meta["sample_steps"],
                       guidance=meta["guidance"], seed=args.seed).numpy() + 1) / 2
    test = resolve_data_source(args.test_data, workspace=run_dir.parent.parent, split="test",
                               resolution=model.config.resolution, min_records=1)
    result = downstream_accuracy(images, labels.numpy(), test.images, test.labels, num_classes=classes)
    summary = json.loads((run_dir / "result.json").read_text())
    print(json.dumps({"run": run_dir.name, "recipe": summary["recipe"], "epsilon": summary["epsilon"],
                      "synthetic_images": int(labels.numel()), "downstream_accuracy": result.test_accuracy,
                      "chosen_epoch": result.chosen_epoch}))


if __name__ == "__main__":
    main()
