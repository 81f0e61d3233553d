"""Privacy accounting: what every part that read the private set spent (docs/method.md §1.5-§1.7, 2).

- :mod:`~dpsad_core.privacy.mechanisms`: :class:`Mechanism` (one sampled Gaussian mechanism run
  ``steps`` times), noise multipliers of releases sharing one subsample, DP-RDM's per-query mechanism.
- :mod:`~dpsad_core.privacy.analysis`: pure functions, epsilon under the RDP and PRV accountants.
- :mod:`~dpsad_core.privacy.accountant`: :class:`PrivacyAccountant`, the stateful history of a run.
- :mod:`~dpsad_core.privacy.calibration`: the noise (or steps) a budget affords, never overshooting.

Opacus (and so torch) is imported only when an epsilon is first computed.
"""

from __future__ import annotations

from dpsad_core.privacy.accountant import PrivacyAccountant
from dpsad_core.privacy.analysis import (
                                         ACCOUNTANTS,
                                         RDP_ORDERS,
                                         AccountantValues,
                                         compute_epsilon,
                                         epsilon_prv,
                                         epsilon_rdp,
)
from dpsad_core.privacy.calibration import calibrate_noise_multiplier, steps_for_budget
from dpsad_core.privacy.mechanisms import (
                                         Mechanism,
                                         combined_noise_multiplier,
                                         rdm_query_mechanism,
                                         split_noise_multiplier,
)

__all__ = [
    "ACCOUNTANTS",
    "RDP_ORDERS",
    "AccountantValues",
    "Mechanism",
    "PrivacyAccountant",
    "calibrate_noise_multiplier",
    "combined_noise_multiplier",
    "compute_epsilon",
    "epsilon_prv",
    "epsilon_rdp",
    "rdm_query_mechanism",
    "split_noise_multiplier",
    "steps_for_budget",
]
