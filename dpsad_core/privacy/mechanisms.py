"""The mechanisms that read the private set, as the accountants see them (docs/method.md §1.6-§1.7, 2).

Every release computed from the private data is a Poisson-subsampled Gaussian mechanism: records are
sampled independently with rate ``q``, each record's contribution is clipped to L2 norm ``C``, and
Gaussian noise with standard deviation ``sigma * C`` is added. The accountants only need the noise
multiplier ``sigma``, the rate ``q`` and how many times the mechanism ran; the clip norm and the
components are kept for the report.

This module also holds the argument checks shared by the other modules of the package, so that every
entry point rejects a bad ``delta`` or ``sample_rate`` with the same message.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dpsad_core.errors import ConfigError

__all__ = [
    "Mechanism",
    "combined_noise_multiplier",
    "rdm_query_mechanism",
    "split_noise_multiplier",
]

_JSONScalar = str | int | float | bool | None


# -- argument checks shared by the package ---------------------------------------------------------
def _check_positive(name: str, value: object, *, remedy: str | None = None) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}", field=name, value=value, remedy=remedy)
    number = float(value)
    if not math.isfinite(number) or number <= 0.0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}", field=name, value=value,
                          remedy=remedy)
    return number


def _check_noise_multiplier(value: object, *, name: str = "noise_multiplier") -> float:
    return _check_positive(name, value, remedy="a DP mechanism needs Gaussian noise: use a noise multiplier > 0, "
                                              "or declare the part nonprivate")


def _check_sample_rate(value: object, *, name: str = "sample_rate") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}", field=name, value=value,
                          remedy="use the expected batch size divided by the number of privacy units")
    return float(value)


def _check_delta(value: object, *, name: str = "delta") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} must be in (0, 1), got {value!r}", field=name, value=value,
                          remedy="use a delta well below 1 / (number of privacy units), e.g. 1e-5")
    return float(value)


def _check_count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}", field=name, value=value)
    return int(value)


def _check_part(value: object, *, name: str = "part") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}", field=name, value=value)
    return value


def _json_scalar(key: str, value: object) -> _JSONScalar:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ConfigError(f"components: entry {key!r} must be a string, number, bool or None, got {value!r}",
                      field="components", value=value)


def _check_components(value: object) -> tuple[dict[str, _JSONScalar], ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigError(f"components must be a sequence of dicts, got {value!r}", field="components",
                          value=value)
    components = []
    for item in value:
        if not isinstance(item, Mapping) or not all(isinstance(key, str) for key in item):
            raise ConfigError(f"components must be dicts with string keys, got {item!r}",
                              field="components", value=item)
        # A private copy: a frozen mechanism must not change when the caller's dict does.
        components.append({key: _json_scalar(key, entry) for key, entry in item.items()})
    return tuple(components)


# -- the mechanism ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mechanism:
    """One sampled Gaussian mechanism repeated ``steps`` times, as the accountant composes it.

    Parameters
    ----------
    part : str
        What read the private data: ``"teacher"``, ``"student+discriminator"``, ``"dpdm"``, ...
    noise_multiplier : float
        Noise standard deviation divided by the L2 sensitivity (``sigma``), > 0.
    sample_rate : float
        Poisson sampling rate ``q`` in (0, 1].
    steps : int
        How many times the mechanism ran, >= 0.
    clip_norm : float or None
        The clipping norm; informational, ``None`` when the mechanism combines several clip norms.
    components : tuple of dict
        Informational: the releases that share this mechanism's subsample, e.g.
        ``({"part": "student", "noise_multiplier": s, "clip_norm": c}, ...)``.
    """

    part: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    clip_norm: float | None = None
    components: tuple[dict[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_part(self.part)
        object.__setattr__(self, "noise_multiplier", _check_noise_multiplier(self.noise_multiplier))
        object.__setattr__(self, "sample_rate", _check_sample_rate(self.sample_rate))
        object.__setattr__(self, "steps", _check_count("steps", self.steps))
        if self.clip_norm is not None:
            object.__setattr__(self, "clip_norm", _check_positive("clip_norm", self.clip_norm))
        object.__setattr__(self, "components", _check_components(self.components))

    def __hash__(self) -> int:
        # Components are dicts (unhashable); hash their sorted items instead.
        components = tuple(tuple(sorted(item.items(), key=lambda kv: kv[0])) for item in self.components)
        return hash((self.part, self.noise_multiplier, self.sample_rate, self.steps, self.clip_norm, components))

    def noise_of(self, part: str) -> tuple[float, float] | None:
        """``(noise multiplier, clip norm)`` that one step adds to ``part``, or None if it adds no noise.

        A step is driven by this: the noise it draws is exactly what the accountant composes. With
        components (releases sharing one subsample), each component names its own; otherwise the
        mechanism's own part is the one release.
        """
        for item in self.components:
            if item.get("part") == part:
                return float(item["noise_multiplier"]), float(item["clip_norm"])
        if not self.components and part == self.part and self.clip_norm is not None:
            return self.noise_multiplier, self.clip_norm
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict; :meth:`from_dict` restores an equal mechanism."""
        return {
            "part": self.part,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "clip_norm": self.clip_norm,
            "components": [dict(item) for item in self.components],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mechanism:
        """Build a mechanism from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            If a required key is missing, a key is unknown, or a value is out of range.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a mechanism must be a dict, got {d!r}", field="mechanism", value=d)
        required = {"part", "noise_multiplier", "sample_rate", "steps"}
        known = required | {"clip_norm", "components"}
        missing = sorted(required - set(d))
        unknown = sorted(set(d) - known)
        if missing or unknown:
            raise ConfigError(f"malformed mechanism {dict(d)!r}: missing {missing}, unknown {unknown}",
                              field="mechanism", value=dict(d))
        return cls(part=d["part"], noise_multiplier=d["noise_multiplier"], sample_rate=d["sample_rate"],
                   steps=d["steps"], clip_norm=d.get("clip_norm"), components=tuple(d.get("components", ())))


# -- several releases from one subsample -----------------------------------------------------------
def combined_noise_multiplier(noise_multipliers: Sequence[float]) -> float:
    """Effective noise multiplier of releases that share one Poisson subsample in one iteration.

    With releases ``f_i(batch) + N(0, sigma_i^2 C_i^2 I)`` of sensitivities ``C_i``, dividing each by
    ``sigma_i C_i`` stacks them into one Gaussian mechanism with unit noise and sensitivity
    ``sqrt(sum_i sigma_i^-2)``, i.e. ``sigma_eff = (sum_i sigma_i^-2)^(-1/2)`` (docs/method.md §1.7).

    Parameters
    ----------
    noise_multipliers : sequence of float
        The releases' noise multipliers, each > 0.

    Returns
    -------
    float
        ``sigma_eff``; ``combined_noise_multiplier([s, s]) == s / sqrt(2)``.

    Raises
    ------
    ConfigError
        If the sequence is empty or a multiplier is not > 0.
    """
    sigmas = [_check_noise_multiplier(value, name=f"noise_multipliers[{i}]")
              for i, value in enumerate(noise_multipliers)]
    if not sigmas:
        raise ConfigError("noise_multipliers must name at least one release", field="noise_multipliers",
                          value=list(noise_multipliers))
    return float(math.fsum(sigma ** -2 for sigma in sigmas) ** -0.5)


def split_noise_multiplier(sigma_eff: float, *, shares: Sequence[float]) -> tuple[float, ...]:
    """Split an effective noise multiplier into per-release multipliers (inverse of the combination).

    Release ``i`` gets ``sigma_i = sigma_eff / sqrt(share_i)``, so that ``sum_i sigma_i^-2 =
    sigma_eff^-2 * sum_i share_i = sigma_eff^-2``: ``combined_noise_multiplier(result) == sigma_eff``.
    A larger share means less noise on that release.

    Parameters
    ----------
    sigma_eff : float
        The effective noise multiplier, > 0.
    shares : sequence of float
        Each > 0, summing to 1 (within 1e-9).

    Returns
    -------
    tuple of float
        One noise multiplier per share, in order.

    Raises
    ------
    ConfigError
        If ``sigma_eff`` is not > 0, a share is not > 0, or the shares do not sum to 1.
    """
    sigma = _check_noise_multiplier(sigma_eff, name="sigma_eff")
    values = [_check_positive(f"shares[{i}]", share) for i, share in enumerate(shares)]
    total = math.fsum(values)
    if not values or abs(total - 1.0) > 1e-9:
        raise ConfigError(f"shares must sum to 1, got {list(shares)!r} (sum {total:.12g})", field="shares",
                          value=list(shares), remedy="give each release a fraction of the noise budget")
    return tuple(sigma / math.sqrt(share) for share in values)


# -- DP-RDM ----------------------------------------------------------------------------------------
RDM_PART = "rdm-retrieval"


def rdm_query_mechanism(*, k: int, sigma: float, sample_rate: float, queries: int) -> Mechanism:
    """The privacy cost of ``queries`` DP-RDM retrievals (docs/method.md §2; Lebensold et al. 2024).

    Each query Poisson-subsamples the private index with rate ``q``, averages its ``k`` nearest
    unit-norm neighbours and adds ``N(0, sigma^2 I)``. One record changes at most one neighbour, so the
    mean has L2 sensitivity ``2 / k`` and the noise multiplier is ``z = sigma / (2 / k) = sigma * k / 2``.

    Parameters
    ----------
    k : int
        Neighbours averaged per query, >= 1.
    sigma : float
        Standard deviation of the noise added to the mean, > 0.
    sample_rate : float
        Poisson subsampling rate of the index per query, in (0, 1].
    queries : int
        Number of queries answered, >= 0.

    Returns
    -------
    Mechanism
        Part ``"rdm-retrieval"`` with noise multiplier ``sigma * k / 2`` and ``queries`` steps.
    """
    neighbours = _check_count("k", k, minimum=1)
    noise = _check_positive("sigma", sigma)
    sensitivity = 2.0 / neighbours
    return Mechanism(part=RDM_PART, noise_multiplier=noise * neighbours / 2.0, sample_rate=sample_rate, steps=queries,
                     clip_norm=None,
                     components=({"part": RDM_PART, "k": neighbours, "sigma": noise, "sensitivity": sensitivity},))
