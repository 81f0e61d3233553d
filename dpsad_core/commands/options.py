"""Typed command-line values, checked as the command line is read: before any file or work.

Each factory returns an argparse ``type`` that raises ConfigError (exit 2, one line naming the option,
the value and the allowed range). ``cli.main`` reads the command line inside its error handling, so
the error is printed like every other one. Numbers are finite and inside a range a real use can
need: a NaN guidance weight would be written into images as noise, and a seed past 2**63 or a
billion images per class would fail deep inside torch or numpy as a "please report it" error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from dpsad_core.errors import ConfigError

#: Seeds are stored in run configs and given to torch, numpy and random: all take 0 .. 2**63 - 1.
MAX_SEED = 2**63 - 1
#: Images sampled by one command are held in memory (float32) before they are written.
MAX_IMAGES_PER_CLASS = 20_000
MAX_IMAGES = 200_000
#: A sample grid is one PNG: more than this per class makes an image too large to open.
MAX_GRID_PER_CLASS = 1_000
MAX_SAMPLER_STEPS = 10_000
MAX_GUIDANCE = 100.0


def integer(option: str, *, minimum: int | None = None, maximum: int | None = None,
            remedy: str | None = None) -> Callable[[str], int]:
    """A whole number in ``[minimum, maximum]`` (either bound may be open)."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ConfigError(f"{option} expects a whole number, got {text!r}", field=option, value=text,
                              remedy=remedy) from None
        _check_range(option, value, minimum, maximum, remedy, shown=str(value))
        return value
    return parse


def number(option: str, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None,
           remedy: str | None = None) -> Callable[[str], float]:
    """A finite number in ``[minimum, maximum]``, and strictly ``> above`` and ``< below`` when given."""
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ConfigError(f"{option} expects a number, got {text!r}", field=option, value=text,
                              remedy=remedy) from None
        if not math.isfinite(value):
            raise ConfigError(f"{option} must be a finite number, got {text.strip()}", field=option, value=value,
                              remedy=remedy)
        _check_range(option, value, minimum, maximum, remedy, shown=f"{value:g}")
        if above is not None and not value > above:
            raise ConfigError(f"{option} must be greater than {above:g}, got {value:g}", field=option, value=value,
                              remedy=remedy)
        if below is not None and not value < below:
            raise ConfigError(f"{option} must be less than {below:g}, got {value:g}", field=option, value=value,
                              remedy=remedy)
        return value
    return parse


def _check_range(option: str, value: float, minimum: float | None, maximum: float | None, remedy: str | None,
                 *, shown: str) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{option} must be at least {minimum:,}, got {shown}", field=option, value=value,
                          remedy=remedy)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{option} must be at most {maximum:,}, got {shown}", field=option, value=value,
                          remedy=remedy)


def seed(option: str = "--seed") -> Callable[[str], int]:
    return integer(option, minimum=0, maximum=MAX_SEED, remedy="any whole number from 0 to 2**63 - 1")


def guidance(option: str = "--guidance") -> Callable[[str], float]:
    return number(option, minimum=0.0, maximum=MAX_GUIDANCE,
                  remedy="a classifier-free guidance weight: 0 for none, typically 1 to 5")


def sampler_steps(option: str = "--steps") -> Callable[[str], int]:
    return integer(option, minimum=1, maximum=MAX_SAMPLER_STEPS, remedy="DDIM needs 25 to 100 steps")


def images_per_class(option: str = "--per-class", *, maximum: int = MAX_IMAGES_PER_CLASS) -> Callable[[str], int]:
    return integer(option, minimum=1, maximum=maximum,
                   remedy=f"at most {maximum:,} per command; for more, run it again with another --seed")


def image_count(option: str = "--count") -> Callable[[str], int]:
    return integer(option, minimum=1, maximum=MAX_IMAGES,
                   remedy=f"at most {MAX_IMAGES:,} per command; for more, run it again with another --seed")


def epsilon(option: str = "--epsilon") -> Callable[[str], float]:
    return number(option, above=0.0, remedy="a privacy budget, e.g. 1 to 10")


def delta(option: str = "--delta") -> Callable[[str], float]:
    return number(option, above=0.0, below=1.0, remedy="well below 1/N, e.g. 1e-5")


def output_file(path: str | Path, option: str) -> Path:
    """``path`` as a file to write: refused now (not after the work) when it names a folder."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; it expects a file path", field=option.lstrip("-"),
                          value=str(path), remedy=f"e.g. {option} {path / 'grid.png'}"
                          if option == "--out" else "give the path of the file to write")
    if path.parent != path and path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: {path.parent} is a file, not a folder", field=option.lstrip("-"),
                          value=str(path), remedy="give a path inside a folder")
    return path
