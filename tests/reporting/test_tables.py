"""Reporting tables: Markdown and HTML, formats, missing values, best-value highlighting."""

from __future__ import annotations

import pytest

from sace.errors import SaceError
from sace.reporting import (
    MISSING,
    html_table,
    markdown_table,
)
from tests.helpers import TABLE_ROWS


def test_markdown_table_missing_values_highlight_and_alignment():
    md = markdown_table(TABLE_ROWS, highlight={"ACC_e": "min", "FID": "max"})
    lines = md.strip().split("\n")
    assert lines[0] == "| method | ACC_e | FID | n |"
    assert lines[1] == "| --- | ---: | ---: | ---: |"
    assert lines[2] == "| SACE | **0.050** | **12.346** | 5 |"
    assert lines[3] == f"| ESD | {MISSING} | 10.100 | {MISSING} |"
    assert lines[4] == f"| a\\|b <x> | 0.200 | {MISSING} | {MISSING} |"
    assert MISSING == "\u2013"


def test_markdown_table_columns_formats_ties_and_errors():
    rows = [{"a": 1.0, "b": 2}, {"a": 1.0, "b": 3, "c": "x"}]
    md = markdown_table(rows, columns=["b", "a"], floatfmt={"a": "{:.1%}"}, highlight={"a": "max"})
    assert md.split("\n")[2:4] == ["| 2 | **100.0%** |", "| 3 | **100.0%** |"]  # ties are all bold
    assert "c" in markdown_table(rows).split("\n")[0]  # union of keys in order of appearance
    assert markdown_table([]) == "(no rows)\n"
    assert markdown_table([], columns=["x"]).startswith("| x |")
    with pytest.raises(SaceError, match="min' or 'max"):
        markdown_table(rows, highlight={"a": "best"})
    with pytest.raises(SaceError, match="not in the table"):
        markdown_table(rows, highlight={"zzz": "min"})
    with pytest.raises(SaceError, match="dict"):
        markdown_table([[1, 2]])
    # all-missing highlighted column: nothing bold, no crash
    assert "**" not in markdown_table([{"a": None}, {"a": float("nan")}], highlight={"a": "min"})


def test_html_table_escapes_and_marks_best():
    h = html_table(TABLE_ROWS, highlight={"FID": "min"}, caption="results <1>")
    assert "<caption>results &lt;1&gt;</caption>" in h
    assert "a|b &lt;x&gt;" in h and "<x>" not in h
    assert '<td class="num best"><b>10.100</b></td>' in h
    assert h.count(MISSING) == 4  # NaN, None and a missing key
