"""Step-time benchmark: a DP step against a non-private step of the same model and batch.

Measures, in one process (so the ratios compare like with like on a noisy shared machine):
- denoiser (teacher / DPDM) step: DP-SGD (per-record grads, clipping, noise) vs plain autograd;
- student + discriminator step: DP (two clipped releases) vs the same losses with plain autograd;
- private records per second of the DP student step;
- the cost of the secret noise: the DP steps with the ChaCha20 generator the engine uses against the
  same steps with ``torch.randn`` noise (not secure; measured only to price the secure generator);
- DDIM sampling throughput (images per second);
- on CUDA, the peak GPU memory allocated over all of the above (MiB).

Usage: python bench/step_time.py [--resolution 8] [--preset quick] [--repeats 5] [--device cpu]
Prints a Markdown table row per measurement and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dpsad_core.diffusion import DiffusionSchedule
from dpsad_core.models import Discriminator, DiscriminatorConfig, UNet, UNetConfig
from dpsad_core.privacy import Mechanism
from dpsad_core.privacy.randomness import SecretRandomness
from dpsad_core.sampling import generate
from dpsad_core.training import resolve_hyperparameters
from dpsad_core.training.losses import discriminator_loss, make_student_loss
from dpsad_core.training.steps import DataTensors, denoise_step, distill_step, draw_batch


class TorchRandnStream:
    """The noise stream's interface over ``torch.randn``: the baseline the secure generator is priced against."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def noise_like(self, tensor: torch.Tensor, std: float) -> torch.Tensor:
        return std * torch.randn(tensor.shape, generator=self.generator, device=tensor.device, dtype=tensor.dtype)


def synchronised(fn):
    """``fn`` that returns only when the GPU has finished its work (CUDA kernels run asynchronously)."""
    if not torch.cuda.is_available():
        return fn

    def run():
        fn()
        torch.cuda.synchronize()

    return run


def paired_ratio(first, second, repeats: int) -> float:
    """Median of ``time(first) / time(second)`` over back-to-back pairs: a loaded machine slows both alike."""
    first, second = synchronised(first), synchronised(second)
    first(), second()  # warm-up
    ratios = []
    for _ in range(repeats):
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        ratios.append((middle - start) / (time.perf_counter() - middle))
    return statistics.median(ratios)


def timed(fn, repeats: int) -> float:
    fn = synchronised(fn)
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=8)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sample-count", type=int, default=200)
    args = parser.parse_args()
    hyper = resolve_hyperparameters(args.preset)
    device = args.device
    torch.manual_seed(0)
    n, res, batch, k = 4096, args.resolution, hyper.student_batch_size, hyper.draws_per_record
    images = torch.rand(n, 1, res, res, device=device) * 2 - 1
    data = DataTensors(images, torch.randint(0, 10, (n,), device=device), torch.arange(n), n, False)
    schedule = DiffusionSchedule(hyper.diffusion_steps, hyper.schedule)
    unet_config = UNetConfig(image_channels=1, resolution=res, num_classes=10, channels=hyper.channels,
                             attention_levels=hyper.attention_levels)
    teacher, student = UNet(unet_config).to(device), UNet(unet_config).to(device)
    disc = Discriminator(DiscriminatorConfig(image_channels=1, num_classes=10,
                                             channels=hyper.disc_channels)).to(device)
    opt_s, opt_d = torch.optim.Adam(student.parameters(), 1e-4), torch.optim.Adam(disc.parameters(), 1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    randomness = SecretRandomness.fresh()
    secure, fast = randomness.stream("noise"), TorchRandnStream(generator)
    # Fixed batch of exactly the expected size, so both variants see the same work.
    batch_obj = draw_batch(data, sample_rate=1.0, schedule=schedule, draws_per_record=k, label_dropout=0.1,
                           null_label=10, sampling=randomness.stream("sampling"), loss_generator=generator)
    for field in ("x_t", "t", "labels", "noise"):
        setattr(batch_obj, field, getattr(batch_obj, field)[:batch])

    denoiser = Mechanism(part="teacher", noise_multiplier=1.0, sample_rate=batch / n, steps=1, clip_norm=0.1)
    joint = Mechanism(part="student+discriminator", noise_multiplier=0.7, sample_rate=batch / n, steps=1,
                      components=({"part": "student", "noise_multiplier": 1.0, "clip_norm": 0.1},
                                  {"part": "discriminator", "noise_multiplier": 1.0, "clip_norm": 0.1}))

    def denoise(mechanism, stream=secure):
        return lambda: denoise_step(student, opt_s, batch_obj, mechanism=mechanism, expected_batch_size=batch,
                                    microbatch_size=hyper.microbatch_size, stream=stream)

    def student_dp(stream=secure):
        distill_step(teacher=teacher, student=student, discriminator=disc, student_optimizer=opt_s,
                     disc_optimizer=opt_d, batch=batch_obj, mechanism=joint, expected_batch_size=batch,
                     adversarial_weight=1.0, distillation_weight=1.0, microbatch_size=hyper.microbatch_size,
                     stream=stream)

    def student_plain():
        b = batch_obj
        fx, ft, fy, fn = b.flat(b.x_t), b.flat(b.t), b.flat(b.labels), b.flat(b.noise)
        with torch.no_grad():
            teacher_eps, student_eps = teacher(fx, ft, fy), student(fx, ft, fy)
        opt_d.zero_grad()
        discriminator_loss(disc, fx, ft, fy, teacher_eps, student_eps).backward()
        opt_d.step()
        opt_s.zero_grad()
        make_student_loss(disc, 1.0)(student, fx, ft, fy, fn, teacher_eps).backward()
        opt_s.step()

    results = {
        "denoise_plain_s": timed(denoise(None), args.repeats),
        "denoise_dp_s": timed(denoise(denoiser), args.repeats),
        "student_plain_s": timed(student_plain, args.repeats),
        "student_dp_s": timed(student_dp, args.repeats),
        # The secure generator's cost: its DP step over the same step with torch.randn noise, in pairs.
        "denoise_secure_noise_ratio": paired_ratio(denoise(denoiser), denoise(denoiser, fast), args.repeats),
        "student_secure_noise_ratio": paired_ratio(student_dp, lambda: student_dp(fast), args.repeats),
        # The noise of one denoiser release alone (short, so less exposed to a loaded machine's drift).
        "noise_secure_s": timed(lambda: [secure.noise_like(p, 1.0) for p in student.parameters()], 5 * args.repeats),
        "noise_randn_s": timed(lambda: [fast.noise_like(p, 1.0) for p in student.parameters()], 5 * args.repeats),
    }
    labels = torch.arange(10).repeat_interleave(args.sample_count // 10)
    sample_s = timed(lambda: generate(student, schedule, labels=labels, image_shape=(1, res, res),
                                      steps=hyper.sample_steps, device=device), 1)
    results.update({
        "resolution": res, "preset": args.preset, "batch": batch, "draws_per_record": k,
        "unet_params": sum(p.numel() for p in student.parameters()),
        "disc_params": sum(p.numel() for p in disc.parameters()),
        "denoise_ratio": results["denoise_dp_s"] / results["denoise_plain_s"],
        "student_ratio": results["student_dp_s"] / results["student_plain_s"],
        # What the secure noise adds to a denoiser DP step, from the noise timed alone.
        "secure_noise_share_of_denoise_step": (results["noise_secure_s"] - results["noise_randn_s"])
        / results["denoise_dp_s"],
        "student_dp_records_per_s": batch / results["student_dp_s"],
        "denoise_dp_records_per_s": batch / results["denoise_dp_s"],
        "ddim_steps": hyper.sample_steps, "ddim_images_per_s": labels.numel() / sample_s,
        "device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "peak_memory_mib": (round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
                            if device.startswith("cuda") else None),
    })
    print(f"| {res}x{res} | {args.preset} | {batch}x{k} | {results['denoise_plain_s']:.2f} | "
          f"{results['denoise_dp_s']:.2f} | {results['denoise_ratio']:.2f} | {results['student_plain_s']:.2f} | "
          f"{results['student_dp_s']:.2f} | {results['student_ratio']:.2f} | "
          f"{results['student_dp_records_per_s']:.0f} | {results['ddim_images_per_s']:.0f} | "
          f"{results['denoise_secure_noise_ratio']:.3f} | {results['student_secure_noise_ratio']:.3f} | "
          f"{results['noise_secure_s'] * 1e3:.1f} | {results['noise_randn_s'] * 1e3:.1f} | "
          f"{results['secure_noise_share_of_denoise_step']:.1%} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
