"""Evaluate a finished run the way the benchmark table does, and print one JSON line.

    python bench/evaluate_run.py RUN_DIR --test-data ../shared/data/mnist --per-class 1000

Runs ``dpsad-core evaluate`` (dpsad_core.evaluation.evaluate_run): samples from the released model,
trains the downstream CNN and logistic regression on the synthetic images only (selected on a
synthetic hold-out, never on the real test set), computes the Frechet distance on classifier features,
precision/recall and the memorisation share, and stores evaluation.json in the run folder. The line
printed holds the headline numbers, the privacy numbers of the run and the minutes each stage took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dpsad_core.evaluation import EvaluationFinished, EvaluationOptions, evaluate_run, headline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--test-data", required=True)
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10, help="downstream CNN epochs")
    parser.add_argument("--min-steps", type=int, default=0,
                        help="at least this many CNN steps (default 0: the protocol the documented numbers used)")
    parser.add_argument("--inception-weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run_dir = Path(args.run_dir).resolve()
    options = EvaluationOptions(per_class=args.per_class, cnn_epochs=args.epochs, cnn_min_steps=args.min_steps,
                                seed=args.seed,
                                device=args.device, inception_weights=args.inception_weights)
    began = time.perf_counter()
    finished = None
    for event in evaluate_run(str(run_dir), test=args.test_data, workspace=run_dir.parent.parent, options=options):
        if isinstance(event, EvaluationFinished):
            finished = event
        else:
            print(f"# {event.detail}", flush=True)
    result = finished.result
    summary = json.loads((run_dir / "result.json").read_text())
    print(json.dumps({"run": run_dir.name, "recipe": summary["recipe"], "epsilon": summary["epsilon"],
                      "private": summary["private"], **headline(result),
                      "downstream_accuracy": result["downstream"]["cnn"]["accuracy"],
                      "chosen_epoch": result["downstream"]["cnn"]["chosen_epoch"],
                      "device": result["config"]["device"],
                      "stage_minutes": {k: round(v / 60, 2) for k, v in result["config"]["seconds"].items()},
                      "eval_minutes": round((time.perf_counter() - began) / 60, 2),
                      "evaluation": str(finished.path)}))


if __name__ == "__main__":
    main()
