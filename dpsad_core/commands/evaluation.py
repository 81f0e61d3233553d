"""``dpsad-core evaluate``: utility, fidelity and memorisation of a finished run's synthetic data."""

from __future__ import annotations

import argparse
import sys

from dpsad_core.commands import options as typed
from dpsad_core.commands.common import add_workspace_option, print_json, workspace_from_args
from dpsad_core.commands.workers import add_worker_options, run_with_workers
from dpsad_core.errors import EXIT_INTERNAL


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the ``dpsad-core`` parser."""
    sub = commands.add_parser(
        "evaluate", help="score a finished run's synthetic data: utility, fidelity, memorisation",
        description="Samples from the run's released model and stores in the run folder (evaluation.json): the "
                    "real test accuracy of a CNN and of a logistic regression trained on the synthetic images only "
                    "(selected on a synthetic hold-out); a Frechet distance and precision/recall on the features of "
                    "a classifier trained on the real training data (true FID only with --inception-weights); and "
                    "how close the synthetic images are to the training images compared with real test images. "
                    "The results are computed from the private data without differential privacy: keep them local. "
                    "A DP-RDM run ('rdm generate') is scored on the images it generated (example queries left out), "
                    "with its private retrieval set in the training set's place; --count/--samples do not apply.")
    sub.add_argument("run", help="run id or folder")
    sub.add_argument("--test", required=True, metavar="DATA",
                     help="real held-out data the model never saw: 'demo', a saved dataset, or a path (IDX folders "
                          "and MedMNIST .npz files give their test split)")
    amount = sub.add_mutually_exclusive_group()
    amount.add_argument("--count", type=typed.image_count(),
                        help="synthetic images in all, spread evenly over the classes")
    amount.add_argument("--per-class", type=typed.images_per_class(), help="synthetic images per class (default 100)")
    amount.add_argument("--samples", metavar="NPZ",
                        help="evaluate these images (from 'dpsad-core sample RUN --npz FILE') instead of sampling")
    sub.add_argument("--steps", type=typed.sampler_steps(), help="DDIM sampling steps (default: the run's setting)")
    sub.add_argument("--generator", default="release", choices=["release", "teacher"],
                     help="which network samples: release (the run's released model; for the dpsad recipe its few-step "
                          "student) or teacher (the DP teacher a student was distilled from, with DDIM)")
    sub.add_argument("--guidance", type=typed.guidance(),
                     help="classifier-free guidance weight for sampling (default: the run's); free in privacy")
    sub.add_argument("--epochs", type=int, default=10, help="epochs of the downstream CNN (default 10)")
    sub.add_argument("--min-steps", type=int, default=1500,
                     help="train the CNN for at least this many optimiser steps, more epochs if needed "
                          "(default 1500; 0 trains exactly --epochs)")
    sub.add_argument("--inception-weights", metavar="FILE",
                     help="pytorch-fid Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth): adds true FID "
                          "(slow on a CPU: minutes per thousand images)")
    sub.add_argument("--seed", type=typed.seed(), default=0)
    add_worker_options(sub, work="sample and train the downstream CNN (the scoring runs on rank 0)")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="end with the stored result as one JSON line on stdout")
    sub.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    return run_with_workers(args, _evaluate_here, "evaluate")


def _evaluate_here(args: argparse.Namespace) -> int:
    from dpsad_core.commands.progress import show_progress
    from dpsad_core.evaluation.evaluate import evaluate_run
    from dpsad_core.evaluation.report import EvaluationFinished, EvaluationOptions

    options = EvaluationOptions(per_class=args.per_class, count=args.count, seed=args.seed, device=args.device,
                                sample_steps=args.steps, guidance=args.guidance, cnn_epochs=args.epochs,
                                cnn_min_steps=args.min_steps, inception_weights=args.inception_weights,
                                samples=args.samples, generator=args.generator)
    finished = None
    for event in show_progress(evaluate_run(args.run, test=args.test, workspace=workspace_from_args(args),
                                            options=options)):
        if isinstance(event, EvaluationFinished):
            finished = event
    if finished is None:  # pragma: no cover - evaluate_run always ends with EvaluationFinished or raises
        return EXIT_INTERNAL
    if args.json:
        print_json(finished.result)
    else:
        _print_summary(finished)
    return 0


def _print_summary(finished) -> None:
    from dpsad_core.evaluation.report import headline

    result, top = finished.result, headline(finished.result)
    reference = result["fidelity"]["frechet_distance_classifier_features_real_reference"]
    memo = result["memorisation"]
    extractor = result["fidelity"]["feature_extractor"]
    if not result.get("private_run", True):
        print("WARNING: this model is NOT differentially private (recipe dpsad-paper)", file=sys.stderr)
    print(f"evaluated run {finished.run_id} on {top['synthetic_count']} synthetic images "
          f"(test set: {result['config']['test_set']['name']}, {result['config']['test_set']['num_records']} images)")
    print(f"  downstream accuracy on the real test set: CNN {top['cnn_accuracy']:.4f}, "
          f"logistic regression {top['logistic_accuracy']:.4f} (selected on a synthetic hold-out)")
    real = "n/a" if reference is None else f"{reference:.4f}"
    print(f"  Frechet distance on classifier features: {top['frechet_distance_classifier_features']:.4f} "
          f"({result['fidelity']['real_reference_count']} unseen real images score {real}; "
          f"feature classifier accuracy {extractor['validation_accuracy']:.3f}; this is not FID)")
    if top["fid"] is not None:
        print(f"  FID (Inception-v3): {top['fid']:.4f}")
    print(f"  precision {top['precision']:.4f}, recall {top['recall']:.4f} (k={result['fidelity']['k']})")
    print(f"  memorisation: {top['dcr_share_closer_to_training_than_holdout']:.1%} of (synthetic, test) pairs have "
          f"the synthetic image closer to the training data (about 50% is good); "
          f"{top['near_copy_count']} near-copies flagged")
    if memo["closest_pairs_image"]:
        print(f"  closest pairs (shows private training images: keep local): "
              f"{finished.path.parent / memo['closest_pairs_image']}")
    print(f"  stored in {finished.path} (computed from private data without differential privacy: keep it local)")
