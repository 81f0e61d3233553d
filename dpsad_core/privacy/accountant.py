"""The stateful accountant: the history of every mechanism that read the private set.

Like Opacus' ``accountants/`` wrappers, this keeps a history and delegates the math to the pure
functions in :mod:`dpsad_core.privacy.analysis`. Unlike them, it records which part of the model
spent what (teacher, student and discriminator, ...) and which parts were trained on the private set
without protection, so the report can list each one (docs/method.md §1.6). A resumed run restores the
history from :meth:`PrivacyAccountant.state_dict` and keeps appending: nothing is reset, nothing is
counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from dpsad_core.errors import ConfigError
from dpsad_core.privacy.analysis import ACCOUNTANTS, AccountantValues, compute_epsilon, epsilon_rdp
from dpsad_core.privacy.mechanisms import Mechanism, _check_count, _check_delta, _check_part

__all__ = ["PrivacyAccountant"]

_STATE_FORMAT = "dpsad-privacy-accountant"
_STATE_VERSION = 1


class PrivacyAccountant:
    """Stateful history of every mechanism that read the private set (teacher, student, discriminator, ...).

    Parameters
    ----------
    delta : float
        The delta every reported epsilon refers to, in (0, 1).

    Examples
    --------
    >>> accountant = PrivacyAccountant(delta=1e-5)
    >>> accountant.step(part="dpdm", noise_multiplier=1.5, sample_rate=0.04, steps=2250)
    >>> round(accountant.epsilon_rdp(), 4)
    7.3291
    """

    def __init__(self, *, delta: float) -> None:
        self._delta = _check_delta(delta)
        self._mechanisms: list[Mechanism] = []
        self._nonprivate: list[str] = []

    # -- recording ---------------------------------------------------------------------------------
    def step(self, *, part: str, noise_multiplier: float, sample_rate: float, clip_norm: float | None = None,
             components: tuple[dict[str, Any], ...] = (), steps: int = 1) -> None:
        """Record ``steps`` runs of one sampled Gaussian mechanism.

        Consecutive records with the same part, noise multiplier, sample rate, clip norm and components
        are merged into one entry (as Opacus merges its history). ``steps=0`` records nothing.

        Raises
        ------
        ConfigError
            If a value is out of range (see :class:`Mechanism`).
        """
        count = _check_count("steps", steps)
        mechanism = Mechanism(part=part, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=count,
                              clip_norm=clip_norm, components=components)
        if count == 0:
            return
        if self._mechanisms:
            last = self._mechanisms[-1]
            if replace(last, steps=count) == mechanism:
                self._mechanisms[-1] = replace(last, steps=last.steps + count)
                return
        self._mechanisms.append(mechanism)

    def record(self, mechanism: Mechanism) -> None:
        """Record ``mechanism`` (``mechanism.steps`` runs of it): the same object that drove the step."""
        self.step(part=mechanism.part, noise_multiplier=mechanism.noise_multiplier,
                  sample_rate=mechanism.sample_rate, clip_norm=mechanism.clip_norm,
                  components=mechanism.components, steps=mechanism.steps)

    def mark_nonprivate(self, part: str) -> None:
        """Record that ``part`` was trained on the private set WITHOUT protection.

        From then on every epsilon is ``math.inf``: a release that depends on such a part is not
        differentially private (docs/method.md §1.5-§1.6).
        """
        name = _check_part(part)
        if name not in self._nonprivate:
            self._nonprivate.append(name)

    # -- reading -----------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        """The delta every reported epsilon refers to."""
        return self._delta

    @property
    def mechanisms(self) -> tuple[Mechanism, ...]:
        """The history, oldest first."""
        return tuple(self._mechanisms)

    @property
    def nonprivate_parts(self) -> tuple[str, ...]:
        """Parts trained on the private set without protection, in the order they were marked."""
        return tuple(self._nonprivate)

    @property
    def is_private(self) -> bool:
        """False once any part was marked nonprivate."""
        return not self._nonprivate

    def values(self, *, accountants: Sequence[str] = ACCOUNTANTS) -> AccountantValues:
        """Epsilon so far under the named accountants (see :func:`compute_epsilon`)."""
        return compute_epsilon(self._mechanisms, delta=self._delta, accountants=accountants,
                               nonprivate_parts=self._nonprivate)

    def epsilon_rdp(self) -> float:
        """RDP epsilon so far: the fast path for per-step progress (per-step RDP values are memoised)."""
        if self._nonprivate:
            return math.inf
        return epsilon_rdp(self._mechanisms, delta=self._delta)[0]

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return a JSON-able snapshot; :meth:`from_state_dict` restores an identical accountant."""
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "delta": self._delta,
            "mechanisms": [mechanism.to_dict() for mechanism in self._mechanisms],
            "nonprivate_parts": list(self._nonprivate),
        }

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> PrivacyAccountant:
        """Restore an accountant from :meth:`state_dict` output.

        Raises
        ------
        ConfigError
            If the snapshot is not an accountant state of a known version, or a value is invalid.
        """
        if not isinstance(d, Mapping) or d.get("format") != _STATE_FORMAT:
            raise ConfigError("not a privacy accountant state", field="accountant_state",
                              value=d.get("format") if isinstance(d, Mapping) else d,
                              remedy="pass the dict written by PrivacyAccountant.state_dict()")
        if d.get("version") != _STATE_VERSION:
            raise ConfigError(f"unsupported accountant state version {d.get('version')!r}", field="version",
                              value=d.get("version"), remedy=f"this version reads version {_STATE_VERSION}")
        mechanisms, nonprivate = d.get("mechanisms"), d.get("nonprivate_parts")
        if not isinstance(mechanisms, list) or not isinstance(nonprivate, list):
            raise ConfigError("accountant state must hold lists 'mechanisms' and 'nonprivate_parts'",
                              field="accountant_state", value=d)
        accountant = cls(delta=_check_delta(d.get("delta")))
        # Restore entries as they were (no re-merging), so the snapshot round-trips exactly.
        accountant._mechanisms = [Mechanism.from_dict(item) for item in mechanisms]
        for part in nonprivate:
            accountant.mark_nonprivate(part)
        return accountant

    def __repr__(self) -> str:
        return (f"PrivacyAccountant(delta={self._delta!r}, mechanisms={len(self._mechanisms)}, "
                f"nonprivate_parts={self.nonprivate_parts!r})")
