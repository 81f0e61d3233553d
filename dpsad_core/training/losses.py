"""Per-record losses, one small callable each, written next to the equations they implement.

Each takes ``call`` (runs the network being trained, with the parameters being differentiated) and
one record's tensors, all with a leading K axis (K draws of (t, eps) for the record): the loss is the
mean over the K draws, so the record's gradient is clipped once (``draws_per_record``: DPDM's noise multiplicity).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

Call = Callable[..., torch.Tensor]


def denoising_loss(call: Call, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
    """``|| eps - eps_psi(x_t, t, y) ||^2`` (Ho et al. 2020, eq. 14; docs/method.md §1.2)."""
    return (call(x_t, t, labels) - noise).pow(2).mean()


def make_student_loss(discriminator: Call, adversarial_weight: float, distillation_weight: float = 1.0
                      ) -> Callable[..., torch.Tensor]:
    """Student loss ``L_dis + lambda L_adv`` (docs/method.md §1.3, steps 2-4).

    ``discriminator(x_t, eps, t, y)`` runs D with its current (already privatised) weights: using them
    is post-processing, so D's parameters are constants here. ``distillation_weight`` scales the
    teacher term of ``L_dis`` (1 in the paper): the unweighted ``L_dis`` is minimised halfway between
    the teacher and the data's denoiser, which biases the student toward a public teacher's style.
    """

    def student_loss(call: Call, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor,
                     teacher_eps: torch.Tensor) -> torch.Tensor:
        student_eps = call(x_t, t, labels)
        # L_dis = || eps_psi(x_r) - eps_theta(x_r) ||^2 + || eps - eps_theta(x_r) ||^2
        distillation = (distillation_weight * (teacher_eps - student_eps).pow(2).mean()
                        + (noise - student_eps).pow(2).mean())
        if adversarial_weight == 0:
            return distillation
        # L_adv = -log D(x_r, eps_theta(x_r)) (non-saturating): softplus(-logit) = -log sigmoid(logit)
        adversarial = F.softplus(-discriminator(x_t, student_eps, t, labels)).mean()
        return distillation + adversarial_weight * adversarial

    return student_loss


def discriminator_loss(call: Call, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                       teacher_eps: torch.Tensor, student_eps: torch.Tensor) -> torch.Tensor:
    """``-log D(x_r, eps_psi) - log(1 - D(x_r, eps_theta))`` (docs/method.md §1.3, step 5).

    Both passes are made from the same record, so both live in one per-record loss and are clipped
    together (the whole per-record loss is what the sensitivity bound covers).
    """
    logits = call(torch.cat([x_t, x_t]), torch.cat([teacher_eps, student_eps]), torch.cat([t, t]),
                  torch.cat([labels, labels]))
    real, fake = logits.chunk(2)
    return F.softplus(-real).mean() + F.softplus(fake).mean()
