"""``dpsad-core sample``: draw a grid (and optionally an .npz) from a finished run's released model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dpsad_core.commands import options as typed
from dpsad_core.commands.common import (
    add_workspace_option,
    print_json,
    workspace_from_args,
)
from dpsad_core.commands.workers import add_worker_options, run_with_workers
from dpsad_core.export.layout import NOT_DP_STAMP


def register(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("sample", help="draw images from a finished run's released model")
    sub.add_argument("run", help="run id or folder")
    sub.add_argument("--per-class", type=typed.images_per_class(maximum=typed.MAX_GRID_PER_CLASS), default=8,
                     help="images per class (default 8)")
    sub.add_argument("--out", help="PNG path for the grid (default: the run's samples/grid.png)")
    sub.add_argument("--npz", help="also save the images and labels as .npz here")
    sub.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    sub.add_argument("--steps", type=typed.sampler_steps(), help="DDIM steps (default: the run's setting)")
    sub.add_argument("--generator", default="release", choices=["release", "teacher"],
                     help="which network samples: release (the run's released model; for the dpsad recipe its few-step "
                          "student) or teacher (the DP teacher a student was distilled from, with DDIM)")
    sub.add_argument("--guidance", type=typed.guidance(), help="classifier-free guidance weight (default: the run's)")
    sub.add_argument("--seed", type=typed.seed(), default=0)
    add_worker_options(sub, work="sample")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    return run_with_workers(args, _sample_here, "sample")


def _sample_here(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from dpsad_core.devices import resolve_device
    from dpsad_core.runs.folder import release_privacy
    from dpsad_core.sampling import (
        generate,
        grid_image,
        load_released_model,
        sampler_times,
        save_png,
        stamp_not_private,
        to_uint8,
    )
    from dpsad_core.training import RunFolder

    out = typed.output_file(args.out, "--out") if args.out else None  # a folder given: refused before sampling
    npz = typed.output_file(args.npz, "--npz") if args.npz else None
    run = RunFolder.open(workspace_from_args(args), args.run)
    device = resolve_device(args.device)
    model, schedule, meta = load_released_model(run.model_path, device, generator=args.generator)
    steps, times = sampler_times(meta, args.steps, args.sampler)
    privacy = release_privacy(run.config(), {"private": meta["private"]})
    classes = len(meta["class_names"])
    labels = torch.arange(classes).repeat_interleave(args.per_class)
    config = model.config
    images = generate(model, schedule, labels=labels, image_shape=(config.image_channels, config.resolution,
                                                                    config.resolution),
                      sampler=args.sampler, steps=steps, timesteps=times,
                      guidance=meta["guidance"] if args.guidance is None else args.guidance, seed=args.seed,
                      device=device)
    pixels = to_uint8(images)
    out = out or run.path / "samples" / "grid.png"
    grid = grid_image(pixels, rows=classes)
    summary: dict[str, Any] = {"run_id": run.run_id, "grid": str(out), "count": int(labels.numel()),
                               "private": privacy["private"]}
    stamp: dict[str, Any] = {}
    if not privacy["private"]:
        grid = stamp_not_private(grid)
        summary["warning"] = (f"{NOT_DP_STAMP}: trained on the private data without protection: "
                              f"{', '.join(privacy['nonprivate_parts'])}")
        stamp = {"stamp": np.array(NOT_DP_STAMP)}
    save_png(grid, out)
    if npz is not None:
        from dpsad_core.atomic import atomic_write

        atomic_write(npz, lambda h: np.savez(h, images=pixels, labels=labels.numpy(),
                                             class_names=np.array(meta["class_names"]), **stamp))
        summary["npz"] = str(npz)
    if "warning" in summary:
        print(f"WARNING: {summary['warning']}", file=sys.stderr)
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {summary['count']} samples to {out}")
    return 0
