"""Exported text is safe to open (issue 15, family 6).

A class name is whatever the dataset's folders or CSV said, so it may be a spreadsheet formula or
HTML. ``labels.csv`` neutralises formulas in every field (the OWASP rule: a leading single quote)
while numbers, such as the label -1 of DP-RDM example queries, stay numbers; the HTML report escapes
names.
"""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from dpsad_core.export import bundle as bundle_module
from dpsad_core.export.layout import LABELS, REPORT_HTML, REPORT_JSON
from dpsad_core.export.sources import EXAMPLE_CLASS, EXAMPLE_LABEL, ImageSource
from dpsad_core.export.spreadsheet import FORMULA_STARTS, spreadsheet_safe
from dpsad_core.export.verify import verify_bundle
from tests.export.conftest import workspace_of

CALC = "=cmd|' /C calc'!A0"
SCRIPT = "<script>alert('pwned')</script>"
# Ten hostile or tricky class names: one per class of the demo digits.
HOSTILE_NAMES = [CALC, SCRIPT, "+SUM(1,2)", "-2+3", '@HYPERLINK("http://evil.example")', "\tTAB", "\rCR",
                 "-1", " =1+1", "cat"]


@pytest.mark.parametrize(("value", "expected"), [
    (CALC, "'" + CALC), ("+SUM(1,2)", "'+SUM(1,2)"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tTAB", "'\tTAB"), ("\rCR", "'\rCR"), (" =1+1", "' =1+1"), ("\n=1+1", "'\n=1+1"),
    # plain numbers are no formula: a spreadsheet reads them as numbers, so they stay as they are
    ("-1", "-1"), ("+2.5", "+2.5"), ("-1e-3", "-1e-3"), (-1, -1), (2.5, 2.5),
    # ordinary text, including a formula character that is not first
    ("cat", "cat"), ("a=b", "a=b"), ("images/0/0-000001.png", "images/0/0-000001.png"), ("", ""),
])
def test_spreadsheet_safe_follows_the_owasp_rule_and_keeps_numbers(value, expected):
    assert spreadsheet_safe(value) == expected


def _fields(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:  # newline="": a quoted "\r" stays in its field
        return list(csv.reader(handle))


def _assert_no_field_starts_a_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for field in row:
            if field.lstrip(" \n").startswith(FORMULA_STARTS):
                float(field)  # only a plain number may start like a formula (raises for anything else)


def test_labels_csv_neutralises_every_text_field_and_keeps_the_label_minus_one_numeric(tmp_path):
    """The writer the export uses, on a DP-RDM-like source: hostile class names and example queries (-1)."""
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, EXAMPLE_LABEL], dtype=np.int64)
    source = ImageSource(class_names=HOSTILE_NAMES, labels=labels, chunks=lambda: iter(()))
    folders = bundle_module._class_folders(HOSTILE_NAMES, labels)
    bundle_module._write_labels(tmp_path, source, folders)
    rows = _fields(tmp_path / LABELS)
    assert rows[0] == ["file_name", "label", "class_name"]
    _assert_no_field_starts_a_formula(rows)
    assert [row[2] for row in rows[1:]] == [spreadsheet_safe(name) for name in HOSTILE_NAMES] + [EXAMPLE_CLASS]
    assert rows[1][2] == "'" + CALC and rows[8][2] == "-1"  # the class named -1 is a plain number: kept
    assert [int(row[1]) for row in rows[1:]] == labels.tolist()  # -1 stays the number -1
    assert all(row[0].startswith("images/") for row in rows[1:])


@pytest.mark.slow
def test_an_exported_bundle_with_hostile_class_names_is_safe_to_open(private_run, tmp_path, monkeypatch):
    """A whole export: labels.csv has no live formula, privacy-report.html no live HTML; the bundle verifies."""
    from dpsad_core.export import sources

    real_source = sources.model_source

    def hostile_source(run, settings):
        return dataclasses.replace(real_source(run, settings), class_names=list(HOSTILE_NAMES))

    monkeypatch.setattr(sources, "model_source", hostile_source)
    events = list(bundle_module.export_bundle(private_run.name, workspace=workspace_of(private_run),
                                              out=tmp_path / "bundle", per_class=1, device="cpu"))
    bundle = events[-1].bundle_path
    assert verify_bundle(bundle).ok

    rows = _fields(bundle / LABELS)
    _assert_no_field_starts_a_formula(rows)
    assert "'" + CALC in [row[2] for row in rows]
    html = (bundle / REPORT_HTML).read_text(encoding="utf-8")
    assert SCRIPT not in html and "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    assert SCRIPT in (bundle / REPORT_JSON).read_text(encoding="utf-8")  # JSON keeps the name as it is
