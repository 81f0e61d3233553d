"""DP-RDM benchmark (issue 6): private retrieval against public-only and non-private retrieval.

The paper's comparison (Lebensold et al. 2024, Table 2) on Fashion-MNIST: the public model (encoder +
retrieval-conditioned UNet) is trained on one half of the training set, the other half is the private
retrieval index, and 1,000 class queries (100 per class) are answered three ways:

- ``dp-rdm``: the product path (``generate_rdm``): Poisson subsample, k nearest, noisy mean, at the
  target epsilon (sigma calibrated by the run so that its noisy count and the 1,000 queries fit);
- ``public-only`` (lambda = 0): the context is the query itself (the public class prototype); the
  private index is never read;
- ``non-private`` (sigma = 0): the same retrieval without noise (NOT differentially private).

Metrics on the real test set: a Frechet distance on the features of a classifier trained on the real
training data of the private domain (not Inception: not FID), and downstream accuracy of a small CNN
trained on the 1,000 generated images (epoch chosen on a synthetic hold-out). ``--cross-domain`` uses
MNIST as the private set with the same public Fashion-MNIST model.

    python bench/rdm.py --workspace /tmp/rdm-bench --resolution 16 --steps 1500 --per-class 100
    python bench/rdm.py --workspace /tmp/rdm-bench --resolution 16 --steps 1500 --per-class 100 --cross-domain

Prints one JSON line per condition and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dpsad_core.data import conform_dataset, load_dataset, save_dataset
from dpsad_core.data.dataset import ImageDataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _named(dataset: ImageDataset, name: str, indices: np.ndarray) -> ImageDataset:
    part = dataset.subset(indices)
    return ImageDataset(images=part.images, labels=part.labels, class_names=part.class_names, patient_ids=None,
                        name=name, source=dataset.source)


def _prepare(workspace: Path, args) -> None:
    """Save the public and private halves of Fashion-MNIST's training set (and MNIST) in the workspace."""
    fashion = load_dataset(SHARED / "fashion-mnist", split="train")
    order = np.random.default_rng(0).permutation(fashion.num_records)
    half = fashion.num_records // 2
    save_dataset(_named(fashion, "fashion-public", np.sort(order[:half])), workspace)
    save_dataset(_named(fashion, "fashion-private", np.sort(order[half:])), workspace)
    if args.cross_domain:
        mnist = load_dataset(SHARED / "mnist", split="train")
        keep = np.sort(np.random.default_rng(1).permutation(mnist.num_records)[:half])
        save_dataset(_named(mnist, "mnist-private", keep), workspace)


def _train_public(workspace: Path, args) -> float:
    from dpsad_core.events import StepCompleted
    from dpsad_core.rdm.store import list_public_models
    from dpsad_core.rdm.training import make_config, train_public

    if args.model in list_public_models(workspace):
        return 0.0
    started = time.monotonic()
    config = make_config(public="fashion-public", name=args.model, preset="quick", resolution=args.resolution,
                         steps=args.steps, encoder_steps=args.encoder_steps, sigma_max=args.sigma_max, k=args.k)
    for event in train_public(config, workspace=workspace):
        if isinstance(event, StepCompleted) and event.step % 100 == 0:
            print(f"{event.phase} {event.step}/{event.total_steps} loss {event.losses['loss']:.4f}", flush=True)
    return time.monotonic() - started


def _query_contexts(model, index, *, per_class: int, k: int, sample_rate: float, mode: str,
                    rng) -> tuple[np.ndarray, np.ndarray]:
    """Contexts of the two comparison conditions (bench only): 'public-only' or 'non-private'."""
    from dpsad_core.privacy.randomness import SecretRandomness
    from dpsad_core.rdm.mechanism import neighbour_mean, poisson_subsample

    sampling = SecretRandomness.fresh().stream("sampling")
    prototypes = model.prototypes()
    contexts, labels = [], []
    for label, name in enumerate(index.class_names):
        for _ in range(per_class):
            if name in model.class_names:
                query = prototypes[model.class_names.index(name)]
            else:  # cross-domain: no public class of that name, a random public exemplar (as generate does)
                query = model.embeddings[int(rng.integers(len(model.embeddings)))]
            if mode == "public-only":
                contexts.append(query)
            else:
                keep = poisson_subsample(index.units, sample_rate, sampling) & (index.labels == label)
                contexts.append(neighbour_mean(index.embeddings[keep], query, k=k))
            labels.append(label)
    return np.asarray(contexts, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def _evaluate(images_uint8: np.ndarray, labels: np.ndarray, *, test, extractor, args) -> dict:
    from dpsad_core.evaluation.downstream import downstream_accuracy
    from dpsad_core.evaluation.fidelity import frechet_distance

    images = images_uint8.astype(np.float32)[:, None] / 255.0
    fd = frechet_distance(extractor(test.images), extractor(images))
    downstream = downstream_accuracy(images, labels, test.images, test.labels, num_classes=test.num_classes,
                                     epochs=args.classifier_epochs)
    return {"frechet_distance": round(fd, 2), "downstream_accuracy": round(downstream.test_accuracy, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--model", default="fashion-public-rdm")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--encoder-steps", type=int, default=400)
    parser.add_argument("--sigma-max", type=float, default=0.3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--q", type=float, default=0.02)
    parser.add_argument("--epsilon", type=float, default=10.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--sample-steps", type=int, default=25)
    parser.add_argument("--test-count", type=int, default=2000)
    parser.add_argument("--classifier-epochs", type=int, default=10)
    parser.add_argument("--cross-domain", action="store_true", help="private set: MNIST instead of Fashion-MNIST")
    parser.add_argument("--out", help="append the JSON lines here")
    args = parser.parse_args()

    import torch

    from dpsad_core.evaluation.features import train_feature_extractor
    from dpsad_core.rdm.generation import GenerateConfig, generate_rdm
    from dpsad_core.rdm.index import build_index
    from dpsad_core.rdm.store import load_public_model, sample_from_contexts
    from dpsad_core.sampling import to_uint8

    torch.set_num_threads(max(1, torch.get_num_threads()))
    workspace = Path(args.workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    timings = {}
    started = time.monotonic()
    _prepare(workspace, args)
    timings["prepare_s"] = round(time.monotonic() - started, 1)
    timings["train_public_s"] = round(_train_public(workspace, args), 1)
    model = load_public_model(args.model, workspace=workspace)
    private_name = "mnist-private" if args.cross_domain else "fashion-private"
    index = build_index(workspace=workspace, public_model=model, data=private_name, min_records=100)
    domain = "mnist" if args.cross_domain else "fashion-mnist"
    test = load_dataset(SHARED / domain, split="test")
    test = conform_dataset(test.subset(np.arange(args.test_count)), resolution=args.resolution)
    from dpsad_core.data import resolve_data_source

    real_train = resolve_data_source(private_name, workspace=workspace, resolution=args.resolution)
    tick = time.monotonic()
    extractor = train_feature_extractor(real_train.images, real_train.labels, num_classes=real_train.num_classes)
    timings["feature_net_s"] = round(time.monotonic() - tick, 1)
    rows = []
    common = {"setting": "cross-domain (public Fashion-MNIST, private MNIST)" if args.cross_domain else
              "Fashion-MNIST halves", "k": args.k, "q": args.q, "queries": args.per_class * len(index.class_names),
              "resolution": args.resolution, "rdm_steps": args.steps, "feature_net_val_acc":
              round(extractor.validation_accuracy, 4)}

    tick = time.monotonic()
    config = GenerateConfig(model=args.model, index=index.name, epsilon=args.epsilon, delta=args.delta, k=args.k,
                            sample_rate=args.q, sigma=None, per_class=args.per_class, guidance=args.guidance,
                            sample_steps=args.sample_steps, seed=0)
    result = list(generate_rdm(config, workspace=workspace))[-1].result
    sigma = result["mechanism"]["sigma"]  # calibrated by the run, after its noisy count (composed with it)
    samples = np.load(result["samples_npz"])
    rows.append({**common, "condition": "dp-rdm", "sigma": round(sigma, 4), "epsilon": round(result["epsilon"], 3),
                 "epsilon_rdp": round(result["accountant_values"]["rdp"], 3), "run_id": result["run_id"],
                 "generate_s": round(time.monotonic() - tick, 1),
                 **_evaluate(samples["images"], samples["labels"], test=test, extractor=extractor, args=args)})
    print(json.dumps(rows[-1]), flush=True)
    for mode in ("public-only", "non-private"):
        tick = time.monotonic()
        rng = np.random.default_rng(1)
        contexts, labels = _query_contexts(model, index, per_class=args.per_class, k=args.k, sample_rate=args.q,
                                           mode=mode, rng=rng)
        images = to_uint8(sample_from_contexts(model.model, model.schedule, torch.as_tensor(contexts)[:, None],
                                               image_shape=model.image_shape, steps=args.sample_steps,
                                               guidance=args.guidance, seed=2))
        rows.append({**common, "condition": mode, "sigma": 0.0 if mode == "non-private" else None,
                     "epsilon": 0.0 if mode == "public-only" else "infinite (not private)",
                     "generate_s": round(time.monotonic() - tick, 1),
                     **_evaluate(images, labels, test=test, extractor=extractor, args=args)})
        print(json.dumps(rows[-1]), flush=True)
    real = {**common, "condition": "real private images (reference)",
            **_evaluate((real_train.images[:len(labels), 0] * 255).round().astype(np.uint8),
                        real_train.labels[:len(labels)], test=test, extractor=extractor, args=args)}
    rows.append(real)
    print(json.dumps(real), flush=True)
    print(json.dumps({"timings": timings}), flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    print("\n| condition | epsilon | Frechet distance (classifier features) | downstream accuracy |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['condition']} | {row.get('epsilon', '-')} | {row['frechet_distance']} | "
              f"{row['downstream_accuracy']} |")


if __name__ == "__main__":
    main()
