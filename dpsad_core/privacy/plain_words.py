"""Privacy numbers in words an analyst and a privacy officer read (no scientific notation).

``e^epsilon`` is the factor by which any output may become more or less likely when one record joins
or leaves the data; at the epsilons people choose (0.1 to 20) it runs from 1.1 to half a billion, and
``2.98e+03`` is a developer's way of writing "about 3,000".
"""

from __future__ import annotations

import math

__all__ = ["likelihood_factor"]


def likelihood_factor(epsilon: float) -> str:
    """``e^epsilon`` in words: "2.7", "about 3,000", "more than a million" (for use after "at most")."""
    factor = math.exp(epsilon) if epsilon < 700 else math.inf
    if factor < 10:
        return f"{factor:.2g}"
    if factor < 1e6:
        rounded = round(factor, 1 - int(math.floor(math.log10(factor))))  # two significant digits
        return f"about {int(rounded):,}"
    return "more than a million"
