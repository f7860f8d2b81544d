"""A result table as a page a reader can read in the Snakemake report.

Snakemake's report offers a CSV only as a download; an HTML result opens inline (in an iframe).
:func:`table_html` turns a CSV file into one self-contained HTML page: a styled ``<table>``
(written by pandas' ``DataFrame.to_html``, every cell escaped) sortable by clicking a column
header (a few lines of inline JavaScript, nothing fetched from the network), numbers shown with
up to 4 significant digits, and the CSV file itself, byte for byte, behind a "Download" link (a
``data:`` URI), so nothing is lost. Rule ``table_html`` (rules/analysis.smk) writes one page per
table. The cells are kept lean (no per-cell classes or tooltips): the page is embedded in the
report once more, base64-encoded.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

#: Rows rendered at most (about 15 bytes a cell); the CSV behind the download link has every row.
MAX_ROWS = 10_000
#: Bytes of a page at most: the report hands each page to its iframe as a base64 data: URL
#: (4/3 of the page), and Chromium refuses URLs over 2 MiB (the frame stays blank).
MAX_PAGE_BYTES = 1_500_000

_STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2937; }
header { padding: 10px 14px; border-bottom: 1px solid #d1d5db; background: #f9fafb; }
header h1 { font-size: 16px; margin: 0 0 4px; }
header p { margin: 0; color: #4b5563; }
a.download { font-weight: 600; color: #1d4ed8; }
table { border-collapse: collapse; margin: 0; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e5e7eb; white-space: nowrap; }
th { position: sticky; top: 0; background: #e5e7eb; text-align: left; cursor: pointer;
     user-select: none; }
th:hover { background: #d1d5db; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #f9fafb; }
tbody tr:hover { background: #fef3c7; }
p.empty { padding: 10px 14px; font-style: italic; }
"""

# Click a header: sort the rows by that column (again: the other way round). Numbers compare
# as numbers, empty cells go last, the rest as text (numeric parts as numbers: 2b < 10b).
_SCRIPT = """
document.querySelectorAll("thead th").forEach((th, i) => th.addEventListener("click", () => {
  const body = document.querySelector("tbody"), rows = Array.from(body.rows);
  const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
  document.querySelectorAll("thead th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  const key = r => r.cells[i].textContent;
  const num = v => v === "inf" ? Infinity : v === "-inf" ? -Infinity : Number(v);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === "" || y === "") return (x === "") - (y === "");
    const nx = num(x), ny = num(y);
    if (!isNaN(nx) && !isNaN(ny)) return dir * (nx - ny);
    return dir * x.localeCompare(y, undefined, {numeric: true});
  });
  body.append(...rows);
}));
"""


def format_number(value) -> str:
    """A number for reading: integers in full, other numbers with up to 4 significant digits
    (without an exponent below 10¹⁵), NaN as an empty cell."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if 1e4 <= abs(value) < 1e15:
        return f"{value:.0f}"
    return f"{value:.4g}"


def read_table(path: str | Path) -> pd.DataFrame:
    """A result CSV as written: only empty cells are missing (a source named ``NA`` stays
    ``NA``); a file without even a header is a table without columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"table {path} is not a readable CSV file: {error}") from error


def table_html(
    table: pd.DataFrame,
    *,
    title: str,
    csv_bytes: bytes | None = None,
    csv_name: str | None = None,
    caption: str = "",
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_PAGE_BYTES,
) -> str:
    """One self-contained HTML page showing ``table``: sortable headers, numbers readable,
    every text escaped. ``csv_bytes`` (the file as written) is offered for download under
    ``csv_name`` when its base64 takes at most half of ``max_bytes`` (else the page names the
    file); the first ``max_rows`` rows are rendered, fewer where the page would exceed
    ``max_bytes``."""
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    if csv_bytes is not None and 4 * len(csv_bytes) / 3 > max_bytes / 2:
        csv_note = (
            f"the CSV ({len(csv_bytes) / 1e6:.1f} MB) is too large to embed here: it is "
            f"{html.escape(csv_name or title)} in the run's tables folder"
        )
        csv_bytes = None
    else:
        csv_note = None
    rows = min(len(table), max_rows)
    while True:
        page = _page(table, rows, title, csv_bytes, csv_name, caption, csv_note)
        size = len(page.encode())
        if size <= max_bytes or rows == 0:
            return page
        rows = min(rows - 1, int(rows * max_bytes / size * 0.95))


def _page(
    table: pd.DataFrame,
    max_rows: int,
    title: str,
    csv_bytes: bytes | None,
    csv_name: str | None,
    caption: str,
    csv_note: str | None,
) -> str:
    numeric = [
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        for dtype in table.dtypes
    ]
    n_rows, n_cols = table.shape
    shown = table.head(max_rows)
    facts = [f"{n_rows} rows × {n_cols} columns"]
    if n_rows > len(shown):
        facts.append(
            f"showing the first {len(shown)} rows (sorting sorts these); the CSV has all {n_rows}"
        )
    if n_rows > 1:
        facts.append("click a column header to sort")
    facts.append("numbers rounded to 4 significant digits (the CSV has them in full)")
    if csv_note:
        facts.append(csv_note)
    download = ""
    if csv_bytes is not None:
        name = html.escape(csv_name or f"{title}.csv")
        uri = "data:text/csv;base64," + base64.b64encode(csv_bytes).decode("ascii")
        download = f' <a class="download" download="{name}" href="{uri}">Download {name}</a>'
    if n_cols == 0:
        content = '<p class="empty">The table has no columns.</p>'
    else:
        # pandas writes the escaped table; numbers go through format_number, missing cells
        # (NaN, None) are empty
        content = shown.to_html(
            index=False,
            na_rep="",
            border=0,
            escape=True,
            formatters={
                c: format_number for c, num in zip(table.columns, numeric, strict=True) if num
            },
        )
        if n_rows == 0:
            content += '\n<p class="empty">The table has no rows.</p>'
    caption_html = f"<p>{html.escape(caption)}</p>" if caption else ""
    columns = [f"td:nth-child({i + 1})" for i, num in enumerate(numeric) if num]
    right = f"\n{', '.join(columns)} {{ text-align: right; }}\n" if columns else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_STYLE}{right}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
{caption_html}<p>{"; ".join(facts)}.{download}</p>
</header>
{content}
<script>{_SCRIPT}</script>
</body>
</html>
"""


def csv_to_html(
    path: str | Path,
    *,
    caption: str = "",
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_PAGE_BYTES,
) -> str:
    """The page of the CSV file at ``path``: :func:`table_html` with the file's own bytes
    behind the download link."""
    path = Path(path)
    table = read_table(path)
    return table_html(
        table,
        title=path.name,
        csv_bytes=path.read_bytes(),
        csv_name=path.name,
        caption=caption,
        max_rows=max_rows,
        max_bytes=max_bytes,
    )
