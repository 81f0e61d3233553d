"""Exported CSV that is safe to open in a spreadsheet (the OWASP rule against CSV injection).

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a
tab or carriage return) as a formula: a class name such as ``=cmd|' /C calc'!A0`` in ``labels.csv``
would run a command on the machine of whoever opens the file. Every field of every CSV a bundle
holds is written through :func:`spreadsheet_safe`, which puts a single quote before such a text, so
a spreadsheet shows it as text (and a program reading the CSV sees the quote).

Numbers stay numbers: an int or float field is written as it is (the label -1 of DP-RDM example
queries stays -1), and so is a text field that is only a plain number (``-1``, ``+2.5``, ``-1e-3``):
a spreadsheet reads it as that number, never as a formula.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: What a spreadsheet takes as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a CSV field no spreadsheet runs: text that could start a formula gets a leading ``'``.

    Leading spaces and line breaks are looked through (some spreadsheets trim them on import).
    Non-text values (numbers) are returned unchanged.

    >>> spreadsheet_safe("=cmd|' /C calc'!A0")
    "'=cmd|' /C calc'!A0"
    >>> spreadsheet_safe(-1), spreadsheet_safe("-1"), spreadsheet_safe("cat")
    (-1, '-1', 'cat')
    """
    if not isinstance(value, str):
        return value
    starts_formula = value.startswith(FORMULA_STARTS) or value.lstrip(" \n").startswith(FORMULA_STARTS)
    if not starts_formula or _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def spreadsheet_safe_row(values: Iterable[Any]) -> list[Any]:
    """Every field of a CSV row through :func:`spreadsheet_safe`."""
    return [spreadsheet_safe(value) for value in values]
