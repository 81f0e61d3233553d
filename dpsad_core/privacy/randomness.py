"""Secret randomness for every mechanism: ChaCha20 keystreams keyed with 256 bits of OS entropy.

The guarantee rests on two random choices the adversary must not know: which privacy units a step
samples (Poisson subsampling) and the Gaussian noise added to the clipped sum. An adversary who
knows our code, every record but one and a run's seed could regenerate both and tell neighbouring
datasets apart with certainty (epsilon = infinity). So each run draws a fresh 256-bit key from
``os.urandom``; the key and the stream positions live only in the run's local checkpoint (so a
resumed run continues the same streams and ends with the same weights), never in a file that can
leave the machine.

The generator is ChaCha20 (RFC 8439) from ``cryptography`` (OpenSSL), a cryptographically secure
keystream. Uniforms take 53 bits per draw; Gaussians come from Box-Muller in float64, and each noise
value is the sum of four such draws divided by two (standard deviation unchanged), as Opacus'
``secure_mode`` does against the floating-point attacks on naive Gaussian samplers (Holohan and
Braghin 2021, arXiv 2107.10138, section 5.1; Haney et al. 2022, arXiv 2112.05307).

Streams are named ("sampling", "noise", "loss", and "count" for the noisy number of units): each call of a
stream uses a fresh ChaCha20 nonce (stream id, call counter), so the streams are independent and a stream's
state is one integer.

A *reproducible* source (:meth:`SecretRandomness.from_seed`) derives its key from a seed a user or a
test chose. Such a key is not secret, so a run that uses one is reported NOT differentially private.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from dpsad_core.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where noise is drawn into a tensor
    import torch

__all__ = ["GENERATOR_DESCRIPTION", "REPRODUCIBLE_NOISE_PART", "SecretRandomness", "SecretStream", "os_entropy"]

KEY_BYTES = 32
STREAM_IDS = {"sampling": 1, "noise": 2, "loss": 3, "count": 4}
GENERATOR_DESCRIPTION = ("ChaCha20 keystream (cryptography/OpenSSL) keyed with 256 bits of fresh OS entropy per run; "
                         "Gaussian noise as the sum of four Box-Muller draws divided by two (Opacus secure_mode)")
REPRODUCIBLE_DESCRIPTION = ("ChaCha20 keystream keyed from a fixed, known seed (--privacy-seed): the noise can be "
                            "regenerated, so the run is NOT differentially private")
# The accountant's name for what a known noise seed voids (listed with the parts trained without protection).
REPRODUCIBLE_NOISE_PART = "noise and sampling (from a known --privacy-seed)"
_STATE_FORMAT = "dpsad-secret-randomness/1"
_SEED_DOMAIN = b"dpsad-core reproducible privacy noise v1\x00"


def os_entropy(size: int) -> bytes:
    """Fresh bytes from the operating system's CSPRNG (one place, so tests can pin a run's key)."""
    return os.urandom(size)


class SecretStream:
    """One named keystream: uniforms, Bernoulli draws, Gaussians and seeds, each call on a fresh nonce."""

    def __init__(self, key: bytes, stream_id: int, calls: int = 0) -> None:
        self._key, self._id, self.calls = key, stream_id, calls

    def _keystream(self, size: int) -> bytes:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        # cryptography's 16-byte ChaCha20 "nonce" is the 32-bit block counter (0) then RFC 8439's 96-bit
        # nonce: here the stream id and the call counter, so no (key, nonce) pair is ever used twice.
        nonce = (b"\x00\x00\x00\x00" + self._id.to_bytes(4, "little") + self.calls.to_bytes(8, "little"))
        self.calls += 1
        encryptor = Cipher(algorithms.ChaCha20(self._key, nonce), mode=None).encryptor()
        return encryptor.update(bytes(size))

    def random(self, count: int) -> np.ndarray:
        """``count`` uniforms in [0, 1) with 53 random bits each (float64)."""
        words = np.frombuffer(self._keystream(8 * count), dtype="<u8")
        return (words >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

    def bernoulli(self, count: int, probability: float) -> np.ndarray:
        """``count`` independent booleans, each True with ``probability``."""
        return self.random(count) < probability

    def standard_normal(self, count: int) -> np.ndarray:
        """``count`` standard Gaussians (Box-Muller in float64)."""
        pairs = (count + 1) // 2
        uniforms = self.random(2 * pairs).reshape(2, pairs)
        radius = np.sqrt(-2.0 * np.log1p(-uniforms[0]))  # 1 - u is in (0, 1]: log never sees 0
        angle = 2.0 * np.pi * uniforms[1]
        return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]

    def secure_normal(self, count: int, std: float) -> np.ndarray:
        """``count`` draws of N(0, std^2): the sum of four Gaussians divided by two (Opacus secure_mode)."""
        total: np.ndarray = self.standard_normal(4 * count).reshape(4, count).sum(axis=0)
        return total * (std / 2.0)

    def noise_like(self, tensor: torch.Tensor, std: float) -> torch.Tensor:
        """A tensor of N(0, std^2) noise shaped like ``tensor``, on its device and in its dtype."""
        import torch

        values = self.secure_normal(tensor.numel(), std).reshape(tuple(tensor.shape))
        return torch.from_numpy(values).to(device=tensor.device, dtype=tensor.dtype)

    def seed(self) -> int:
        """A 63-bit seed for a torch generator whose draws must stay secret too."""
        return int(np.frombuffer(self._keystream(8), dtype="<u8")[0] >> np.uint64(1))


class SecretRandomness:
    """A run's key and its named streams.

    Build it with :meth:`fresh` (a private run) or :meth:`from_seed` (reproducible, NOT private);
    persist it only in the local checkpoint with :meth:`state_dict`.
    """

    def __init__(self, key: bytes, *, reproducible: bool, calls: dict[str, int] | None = None) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ConfigError("a secret randomness key must be 32 bytes", field="key", value=type(key).__name__)
        self._key, self.reproducible = key, reproducible
        calls = calls or {}
        self._streams = {name: SecretStream(key, stream_id, int(calls.get(name, 0)))
                         for name, stream_id in STREAM_IDS.items()}

    @classmethod
    def fresh(cls) -> SecretRandomness:
        return cls(os_entropy(KEY_BYTES), reproducible=False)

    @classmethod
    def from_seed(cls, seed: int) -> SecretRandomness:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
            raise ConfigError(f"a privacy seed must be a whole number in [0, 2^63), got {seed!r}",
                              field="privacy_seed", value=seed)
        return cls(hashlib.sha256(_SEED_DOMAIN + seed.to_bytes(8, "little")).digest(), reproducible=True)

    @property
    def description(self) -> str:
        return REPRODUCIBLE_DESCRIPTION if self.reproducible else GENERATOR_DESCRIPTION

    def stream(self, name: str) -> SecretStream:
        return self._streams[name]

    def state_dict(self) -> dict[str, Any]:
        """The key and stream positions: for the local checkpoint only, never for an exported file."""
        return {"format": _STATE_FORMAT, "key": self._key, "reproducible": self.reproducible,
                "calls": {name: stream.calls for name, stream in self._streams.items()}}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SecretRandomness:
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ConfigError("the checkpoint's randomness state is not one this version can read",
                              field="rng", remedy="start a new run")
        return cls(bytes(state["key"]), reproducible=bool(state["reproducible"]), calls=dict(state["calls"]))
