"""e^epsilon in words: no scientific notation in what an analyst reads."""

from __future__ import annotations

import pytest

from dpsad_core.privacy.plain_words import likelihood_factor


@pytest.mark.parametrize(("epsilon", "words"), [
    (0.1, "1.1"), (1.0, "2.7"), (2.0, "7.4"), (3.0, "about 20"), (8.0, "about 3,000"), (10.0, "about 22,000"),
    (13.0, "about 440,000"), (14.0, "more than a million"), (1e6, "more than a million"),
])
def test_the_factor_reads_as_a_plain_number(epsilon, words):
    assert likelihood_factor(epsilon) == words
