"""The names a bundle may carry for the data: the analyst's, or a neutral one; never a local folder or file name.

A dataset imported without ``--name`` is named after its folder or file, and clinical folder names often
carry a ward's, a study's or a patient's name. Bundles therefore name a dataset only when the analyst chose
the name (``import --name``) or it is a built-in source's public name (``demo``, ``rendered-digits``);
otherwise they say "dataset" (or "public dataset"). Paths never leave: a data spec that is not a declared
name is replaced the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRIVATE_NAME = "dataset"
PUBLIC_NAME = "public dataset"
INDEX_NAME = "private index"


def exported_name(summary: Mapping[str, Any] | None, default: str) -> str:
    """``summary["name"]`` when the analyst declared it (``name_declared``), else ``default``."""
    if summary and summary.get("name_declared") and isinstance(summary.get("name"), str):
        return summary["name"]
    return default


BUILT_IN_SOURCES = ("demo", "rendered-digits")


def shareable_spec(spec: str, summary: Mapping[str, Any] | None, default: str) -> str:
    """What the analyst typed for the data (``--data``), if it is a built-in source or the declared name; else
    the name a bundle may carry."""
    if spec in BUILT_IN_SOURCES or (summary and summary.get("name_declared") and spec == summary.get("name")):
        return spec
    return exported_name(summary, default)


def size_text(dataset: dict[str, Any]) -> str:
    """The private data's size as a report section may state it: exact only when declared public."""
    if dataset.get("num_records") is not None:
        return f"{dataset['num_records']} images, {dataset['num_privacy_units']} privacy units"
    if dataset.get("count_noise") is not None:
        return (f"about {dataset.get('num_privacy_units_published')} privacy units (a noisy count, standard deviation "
                f"{dataset['count_noise']:g}, rounded down; the exact number is private)")
    return (f"at least {dataset.get('num_privacy_units_published')} privacy units (rounded down; the exact number "
            "is private)")
