"""A result CSV as the report's HTML page (transferability.report.tables): escaped text, readable
numbers, the sorting script, the CSV byte for byte behind the download link, empty tables, bad
input."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from transferability.report.tables import csv_to_html, format_number, read_table, table_html


class _Cells(HTMLParser):
    """Header texts, body rows (each cell's text), links and scripts of a page."""

    def __init__(self, page: str):
        super().__init__()
        self.head, self.rows, self.links, self.scripts = [], [], [], []
        self._where = self._cell = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("thead", "tbody"):
            self._where = tag
        elif tag == "tr" and self._where == "tbody":
            self.rows.append([])
        elif tag in ("th", "td"):
            self._cell = [""]
        elif tag == "a":
            self.links.append(attrs)
        elif tag == "script":
            self.scripts.append(attrs)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data

    def handle_endtag(self, tag):
        if tag == "th":
            self.head.append(self._cell[0])
        elif tag == "td":
            self.rows[-1].append(self._cell[0])
        if tag in ("th", "td"):
            self._cell = None


@pytest.mark.parametrize(
    "value, shown",
    [
        (0.123456789, "0.1235"),
        (-0.00012345, "-0.0001234"),
        (1.5e-7, "1.5e-07"),
        (6.0, "6"),
        (12800.0, "12800"),
        (12345.678, "12346"),
        (1e20, "1e+20"),
        (3, "3"),
        (np.int64(42), "42"),
        (np.float32(0.5), "0.5"),
        (float("nan"), ""),
        (float("inf"), "inf"),
        (-float("inf"), "-inf"),
        (True, "True"),
    ],
)
def test_numbers_are_shown_with_up_to_4_significant_digits(value, shown):
    assert format_number(value) == shown


def test_a_csv_becomes_a_sortable_table_that_keeps_every_value(tmp_path):
    path = tmp_path / "leaderboard.csv"
    table = pd.DataFrame(
        {
            "metric": ["<b>rsa</b>", "a & b", "NA"],
            "rho": [0.123456789, np.nan, -1.0],
            "n": [6, 7, 8],
            "significant": [True, False, True],
            "note": ['"quoted"', "", "x"],
        }
    )
    table.to_csv(path, index=False)
    page = csv_to_html(path, caption="The <main> result")
    cells = _Cells(page)
    assert cells.head == ["metric", "rho", "n", "significant", "note"]
    assert [row[0] for row in cells.rows] == ["<b>rsa</b>", "a & b", "NA"]  # text, escaped
    assert "<b>rsa</b>" not in page and "&lt;b&gt;rsa&lt;/b&gt;" in page
    assert "The &lt;main&gt; result" in page
    # numbers rounded for reading (missing: empty), their columns right-aligned
    assert [row[1] for row in cells.rows] == ["0.1235", "", "-1"]
    assert [row[2] for row in cells.rows] == ["6", "7", "8"]
    assert "td:nth-child(2), td:nth-child(3) { text-align: right; }" in page
    assert [row[3] for row in cells.rows] == ["True", "False", "True"]
    assert [row[4] for row in cells.rows] == ['"quoted"', "", "x"]
    # sortable with a click on a header: an inline script, nothing fetched
    assert cells.scripts == [{}]
    assert 'addEventListener("click"' in page and "aria-sort" in page
    assert not re.search(r"(src|href)=\"https?:", page)
    # the file itself, byte for byte, behind the download link
    (download,) = [link for link in cells.links if "download" in link]
    assert download["download"] == "leaderboard.csv"
    prefix = "data:text/csv;base64,"
    assert download["href"].startswith(prefix)
    assert base64.b64decode(download["href"][len(prefix) :]) == path.read_bytes()
    assert "3 rows × 5 columns" in page


def test_long_tables_show_the_first_rows_and_say_so(tmp_path):
    path = tmp_path / "finetune.csv"
    pd.DataFrame({"step": range(25), "accuracy": np.linspace(0, 1, 25)}).to_csv(path, index=False)
    page = csv_to_html(path, max_rows=10)
    assert len(_Cells(page).rows) == 10
    assert "showing the first 10 rows" in page and "the CSV has all 25" in page
    assert "25 rows × 2 columns" in page
    with pytest.raises(ValueError, match="max_rows must be >= 0"):
        csv_to_html(path, max_rows=-1)


def test_empty_tables(tmp_path):
    header_only = tmp_path / "quanta.csv"
    header_only.write_text("source,target,score\n")
    page = csv_to_html(header_only)
    cells = _Cells(page)
    assert cells.head == ["source", "target", "score"] and cells.rows == []
    assert "The table has no rows." in page
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("")
    assert "The table has no columns." in csv_to_html(nothing)
    assert "no columns" in table_html(pd.DataFrame(), title="empty")


def test_bad_input_names_the_file(tmp_path):
    missing = tmp_path / "tables" / "missing.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        csv_to_html(missing)
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"a,b\n\xff\xfe,\x00\n")
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        read_table(broken)


def test_literal_na_strings_stay_text(tmp_path):
    """Only empty cells are missing: a source called NA or None keeps its name."""
    path = tmp_path / "t.csv"
    path.write_text("source,value\nNA,1\nNone,\n")
    table = read_table(path)
    assert list(table["source"]) == ["NA", "None"]
    assert table["value"].isna().tolist() == [False, True]


def test_pages_stay_under_the_data_url_limit(tmp_path):
    """The report hands a page to its iframe as a base64 data: URL, which Chromium refuses
    over 2 MiB: a page keeps under max_bytes by showing fewer rows, and a CSV too large to
    embed is named instead of linked."""
    path = tmp_path / "big.csv"
    pd.DataFrame({"name": [f"row{i}" for i in range(3000)], "value": range(3000)}).to_csv(
        path, index=False
    )
    page = csv_to_html(path, max_bytes=40_000)
    assert len(page.encode()) <= 40_000
    shown = len(_Cells(page).rows)
    assert 0 < shown < 3000 and f"showing the first {shown} rows" in page
    assert 'class="download"' not in page and "too large to embed here: it is big.csv" in page
    roomy = csv_to_html(path, max_bytes=2_000_000)
    assert len(_Cells(roomy).rows) == 3000 and 'class="download"' in roomy
