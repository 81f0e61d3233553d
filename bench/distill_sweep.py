"""Sweep the free few-step distillation's settings on one finished ``dpsad`` run's teacher.

    python bench/distill_sweep.py RUN_DIR --test-data ../shared/data/mnist \
        --variant base:steps=600,pool=2048,k=4,adv=0.1 --variant long:steps=2400 --threads 1

The student is post-processing of the run's released teacher (docs/method.md §1.9), so every variant
distills the *same* teacher again, without touching the private data and without spending privacy:
the sweep isolates the distillation's settings from the DP teacher's run-to-run spread. Each variant
trains a student with the engine's own functions (``training/few_step.py``), samples ``--per-class``
images per class with it, and scores them with the benchmark's downstream CNN protocol (trained on
the synthetic images, tested on the real test set); the teacher is scored the same way once, with
DDIM at its own step count, so every row is a student-to-teacher comparison measured in one run.

Variant keys: ``steps`` (distillation steps), ``pool`` (teacher trajectories), ``k`` (student sampling
steps), ``states`` (``trajectories``: the pool's own, ``diffused``: fresh forward-diffused teacher
samples), ``adv`` (adversarial weight), ``lr`` (student learning rate), ``batch`` (distillation batch).
Unnamed keys keep the run's own settings. Pools are cached per (k, pool) in ``--cache``.
Prints one JSON line per variant and writes them all to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

KEYS = {"states": ("states", str), "steps": ("steps", int), "pool": ("pool", int), "k": ("k", int),
        "adv": ("adv", float), "lr": ("lr", float), "batch": ("batch", int)}


@dataclass(frozen=True)
class Variant:
    name: str
    steps: int
    pool: int
    k: int
    adv: float
    lr: float
    batch: int
    states: str = "trajectories"   # or "diffused" (Hyperparameters.distill_states)


def parse_variant(text: str, base: Variant) -> Variant:
    name, _, settings = text.partition(":")
    changes = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        if key not in KEYS:
            raise SystemExit(f"unknown variant key {key!r} in {text!r}; use one of {', '.join(KEYS)}")
        field, kind = KEYS[key]
        changes[field] = kind(value)
    return replace(base, name=name, **changes)


def load_teacher(run_dir: Path):
    from dpsad_core.runs.folder import RunFolder
    from dpsad_core.sampling import load_released_model

    teacher, schedule, meta = load_released_model(run_dir / "model.pt", generator="teacher")
    hyper = RunFolder(run_dir).config().config["hyper"]
    return teacher, schedule, meta, hyper


def teacher_pool(teacher, schedule, *, k: int, size: int, teacher_steps: int, seed: int, cache: Path):
    from dpsad_core.training.few_step import (
        POOL_SEED_OFFSET,
        TeacherPool,
        pool_labels,
        student_timesteps,
        teacher_trajectories,
    )

    path = cache / f"pool-k{k}-m{size}-s{teacher_steps}.pt"
    if path.exists():
        return TeacherPool.from_state_dict(torch.load(path)), 0.0
    began = time.perf_counter()
    config = teacher.config
    times = student_timesteps(schedule.num_steps, k)
    labels = pool_labels(config.num_classes, size)
    generator = torch.Generator().manual_seed(seed + POOL_SEED_OFFSET)
    shape = (config.image_channels, config.resolution, config.resolution)
    pool = TeacherPool.concatenate([
        teacher_trajectories(teacher, schedule, labels[start:start + 512], image_shape=shape,
                             teacher_steps=teacher_steps, timesteps=times, generator=generator)
        for start in range(0, size, 512)])
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(pool.state_dict(), path)
    return pool, time.perf_counter() - began


def distill(teacher, schedule, pool, variant: Variant, hyper: dict, *, seed: int):
    """The engine's few-step phase (engine._begin_few_step and _few_step), with ``variant``'s settings."""
    from dpsad_core.models import EMA, Discriminator, DiscriminatorConfig, VPredictionStudent
    from dpsad_core.training.few_step import few_step_update

    torch.manual_seed(seed)
    config = teacher.config
    student = VPredictionStudent(config, schedule.alphas_cumprod)
    student.unet.load_state_dict(teacher.state_dict())
    ema = EMA(student, hyper["ema_decay"], hyper["ema_power"])
    disc = Discriminator(DiscriminatorConfig(image_channels=config.image_channels, num_classes=config.num_classes,
                                             channels=tuple(hyper["disc_channels"])))
    opt = torch.optim.Adam(student.parameters(), lr=variant.lr)
    disc_opt = torch.optim.Adam(disc.parameters(), lr=hyper["disc_lr"])
    generator = torch.Generator().manual_seed(seed + 3)
    began, last = time.perf_counter(), {}
    for step in range(variant.steps):
        warm = min(1.0, (step + 1) / max(1, hyper["warmup_steps"]))
        for group in opt.param_groups:
            group["lr"] = variant.lr * warm
        last = few_step_update(student=student, discriminator=disc, student_optimizer=opt, disc_optimizer=disc_opt,
                               pool=pool, schedule=schedule, batch_size=variant.batch,
                               adversarial_weight=variant.adv, generator=generator, device="cpu",
                               teacher=teacher if variant.states == "diffused" else None,
                               teacher_steps=hyper["sample_steps"])
        ema.update(student)
    return ema.model.eval(), time.perf_counter() - began, last


def score(model, schedule, *, timesteps, steps: int, per_class: int, test, num_classes: int, cnn_epochs: int,
          seed: int, reference: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    from dpsad_core.evaluation.downstream import downstream_accuracy
    from dpsad_core.sampling import generate

    labels = np.sort(np.arange(per_class * num_classes) % num_classes)
    config = model.config
    began = time.perf_counter()
    images = generate(model, schedule, labels=labels, image_shape=(config.image_channels, config.resolution,
                                                                    config.resolution),
                      steps=steps, timesteps=timesteps, seed=seed)
    seconds = time.perf_counter() - began
    synthetic = ((images.numpy() + 1) / 2).clip(0, 1).astype(np.float32)
    cnn = downstream_accuracy(synthetic, labels, test.images, test.labels, num_classes=num_classes,
                              epochs=cnn_epochs, seed=seed)
    row = {"cnn_accuracy": round(cnn.test_accuracy, 4), "images_per_second": round(len(labels) / seconds, 1)}
    if reference is not None:
        # The same seed gives the same start noise: how far the student lands from its teacher's image.
        row["mse_to_teacher"] = round(float(((synthetic - reference) ** 2).mean()), 5)
    return row, synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--test-data", required=True)
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,... (see the module doc)")
    parser.add_argument("--per-class", type=int, default=500, help="synthetic images per class (the CPU profile's)")
    parser.add_argument("--cnn-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("bench/.distill-cache"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-teacher", action="store_true", help="do not score the teacher")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from dpsad_core.data import resolve_data_source
    from dpsad_core.training.few_step import student_timesteps

    teacher, schedule, meta, hyper = load_teacher(args.run_dir)
    config = teacher.config
    test = resolve_data_source(args.test_data, workspace=args.run_dir.parent.parent, split="test", duplicates="keep",
                               resolution=config.resolution, channels=config.image_channels, min_records=1)
    common = dict(per_class=args.per_class, test=test, num_classes=config.num_classes, cnn_epochs=args.cnn_epochs,
                  seed=args.seed + 1)
    rows, reference = [], None
    if not args.skip_teacher:
        scored, reference = score(teacher, schedule, timesteps=None, steps=hyper["sample_steps"], **common)
        row = {"variant": "teacher", "sample_steps": hyper["sample_steps"], **scored}
        print(json.dumps(row), flush=True)
        rows.append(row)
    base = Variant("run", steps=hyper["distill_steps"], pool=hyper["pool_size"], k=hyper["student_sample_steps"],
                   adv=hyper["distill_adversarial_weight"], lr=hyper["student_lr"], batch=hyper["distill_batch_size"],
                   states=hyper.get("distill_states", "trajectories"))
    for text in args.variant or ["run:"]:
        variant = parse_variant(text, base)
        pool, pool_seconds = teacher_pool(teacher, schedule, k=variant.k, size=variant.pool,
                                          teacher_steps=hyper["sample_steps"], seed=args.seed, cache=args.cache)
        student, seconds, last = distill(teacher, schedule, pool, variant, hyper, seed=args.seed)
        row = {**asdict(variant), "train_minutes": round((seconds + pool_seconds) / 60, 2),
               "last_losses": {key: round(value, 4) for key, value in last.items()},
               **score(student, schedule, timesteps=student_timesteps(schedule.num_steps, variant.k), steps=variant.k,
                       reference=reference, **common)[0]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps({"run": args.run_dir.name, "command": "python bench/distill_sweep.py ...",
                                        "threads": args.threads, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
