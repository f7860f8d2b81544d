"""The tiny run's `snakemake --report` as a reader sees it: rendered by headless Chromium (the
Debian package that `make test` installs, driven by Playwright, which downloads no browser of
its own). The report is a JavaScript single-page app, so grepping its HTML (test_workflow.py)
cannot tell whether it loads, whether every figure opens with its top in reach, or whether each
table shows as a table. Screenshots of the landing page, the main figure and table, and the top
of every figure go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_workflow import REPO, report_args, snakemake, tiny_config

from transferability.report.tables import MAX_ROWS

ARTIFACTS = REPO / "test-artifacts"
VIEWPORT = {"width": 1600, "height": 1000}  # a laptop screen
MIN_SIDE = 200  # px: a figure smaller than this is a placeholder or broken, not a plot
# Figures are saved at 120 dpi with 10 pt text (~17 px per em); shown at less than this
# fraction of their size in the report, their labels drop below ~9 px.
MIN_SCALE = 0.55
# The main result, which report/workflow.rst links first on the landing page.
MAIN_FIGURE, MAIN_TABLE = "leaderboard.png", "leaderboard.html"
INK = 128  # a pixel with a channel below this is drawn (text, lines), not background


def _chromium() -> str:
    for path in (shutil.which("chromium"), "/usr/bin/chromium"):
        if path and Path(path).is_file():
            return path
    pytest.skip(
        "Debian's chromium is not installed (`make test` installs it with apt-get when run "
        "as root), so the report was not checked in a browser"
    )


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (envs/requirements-test.txt)"
    )
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True)
        except sync_api.Error as error:
            pytest.skip(f"{executable} does not start under Playwright: {error}")
        yield browser
        browser.close()


#: Check another run's report instead of the tiny run's: the path of its report.html, which
#: lies in the run's folder or in its results/ (`make run`: results/report.html), e.g.
#: TRANSFERABILITY_REPORT=results/report.html .venv/bin/pytest tests/test_report_browser.py
OTHER_REPORT = os.environ.get("TRANSFERABILITY_REPORT")


@pytest.fixture(scope="module")
def run_dir(request) -> Path:
    """The folder whose results/ the report shows: the tiny run's, or OTHER_REPORT's run."""
    if OTHER_REPORT:
        report = Path(OTHER_REPORT).resolve()
        if not report.is_file():
            pytest.fail(f"TRANSFERABILITY_REPORT={OTHER_REPORT}: no such file")
        return report.parent.parent if report.parent.name == "results" else report.parent
    return request.getfixturevalue("tiny_run")


@pytest.fixture(scope="module")
def report_page(run_dir, browser):
    """The report opened like a reader opens it, with every console error and uncaught
    exception of the page collected in ``page.problems``."""
    report = Path(OTHER_REPORT).resolve() if OTHER_REPORT else run_dir / "report.html"
    if not report.is_file():  # test_workflow.py may have made it already in this session
        snakemake(run_dir, tiny_config(), *report_args(report))
    page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    page.problems = []
    page.on(
        "console",
        lambda msg: msg.type == "error" and page.problems.append(f"console: {msg.text}"),
    )
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))
    page.goto(report.as_uri())
    _sidebar(page).wait_for()
    yield page
    page.close()


def _artifact(page, name: str, **clip) -> Path:
    path = ARTIFACTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, **clip)
    print(f"screenshot: {path}")
    return path


def _first_ink_row(png: Path) -> int:
    """The first row of the figure's own PNG with something drawn in it."""
    from PIL import Image

    with Image.open(png) as image:
        dark = np.asarray(image.convert("L")) < INK
    rows = np.flatnonzero(dark.any(axis=1))
    assert rows.size, f"{png} is blank"
    return int(rows[0])


def _ink_fraction(screenshot: Path) -> float:
    from PIL import Image

    with Image.open(screenshot) as image:
        return float((np.asarray(image.convert("L")) < INK).mean())


def _sidebar(page):
    return page.locator("#app > div > nav")


def _home(page) -> None:
    """The home icon of the breadcrumbs: back to the menu (and the landing content)."""
    _sidebar(page).locator("ol li a").first.click()


def _menu_item(page, label: str):
    return _sidebar(page).locator("ul li a").filter(has_text=re.compile(f"^{re.escape(label)}$"))


def _open_subcategory(page, category: str, subcategory: str) -> None:
    """Menu → the category (*Results* when there is only one) → the subcategory (skipped by
    the report when it is the category's only one)."""
    _home(page)
    single = page.evaluate("Object.keys(categories).length") == 1
    _menu_item(page, "Results" if single else category).click()
    if page.evaluate(f"Object.keys(categories[{category!r}]).length") > 1:
        _menu_item(page, subcategory).click()


def _content(page):
    """The scrolling box right of the menu that shows the result."""
    return page.locator("#app > div > div.grow")


def _shown_figure(page, path: str, run: Path) -> list[str]:
    """The figure on display must be ``path`` as a real image whose top, scrolled to, is in the
    window with the figure's first drawn rows on screen (report/stylesheet.css: Snakemake
    centres a result, which put the top of a tall figure out of scrolling reach). Returns what
    makes it hard to read (too small: the plotting code's business, so not a failure here)."""
    image = _content(page).locator("img")
    image.wait_for(state="visible")
    _content(page).evaluate("box => box.scrollTo(0, 0)")
    shown = image.evaluate(
        "img => img.decode().then(() => ({natural: [img.naturalWidth, img.naturalHeight],"
        " box: img.getBoundingClientRect().toJSON(), src: img.currentSrc.slice(0, 14)}))"
    )
    assert shown["src"] == "data:image/png", (path, shown)
    assert min(shown["natural"]) > MIN_SIDE, (path, shown)
    assert page.evaluate("app.state.resultPath") == path
    scale = shown["box"]["width"] / shown["natural"][0]
    box = image.bounding_box()
    assert box["y"] >= -1, f"{path}: the top {-box['y']:.0f} px lie above the window, out of reach"
    assert box["y"] < VIEWPORT["height"] / 2, (path, box)
    # the band from the image's top edge to just below its first drawn row, on screen
    band = min((_first_ink_row(run / path) + 12) * scale, VIEWPORT["height"] - box["y"])
    clip = {"x": box["x"], "y": max(box["y"], 0), "width": box["width"], "height": band}
    top = _artifact(page, f"figure_tops/{Path(path).stem}.png", clip=clip)
    assert _ink_fraction(top) > 0.001, f"{path}: its top rows are blank on screen ({top})"
    notes = []
    if scale < MIN_SCALE:
        notes.append(f"{shown['natural'][0]} px wide, shown at {scale:.0%}")
    return notes


def _shown_table(page, path: str, run: Path):
    """The table on display must be ``path`` shown inline (rule table_html's page in the
    report's iframe, not a download prompt): its CSV's header and rows as a <table>, and its
    link handing over the CSV byte for byte. Returns the page's frame."""
    frame_box = _content(page).locator("iframe")
    frame_box.wait_for(state="visible")
    assert page.evaluate("app.state.resultPath") == path
    # a frame locator finds the iframe anew on each use: the report may replace the element
    # while it renders (a handle's frame would then be detached and never show the table)
    frame = _content(page).frame_locator("iframe")
    frame.locator("table").wait_for(state="visible")
    source = (run / path).with_suffix(".csv")
    rows = list(csv.reader(io.StringIO(source.read_text())))
    assert len(rows[0]) > 1 and len(rows) > 2, (path, rows[:3])
    assert frame.locator("thead th").all_inner_texts() == rows[0], path
    # every row, or as many as the page says it shows (MAX_ROWS, or a page kept under the
    # data: URL limit, report_tables.MAX_PAGE_BYTES)
    header = frame.locator("header").inner_text()
    first = re.search(r"showing the first (\d+) rows", header)
    shown = int(first.group(1)) if first else len(rows) - 1
    assert shown <= MAX_ROWS and frame.locator("tbody tr").count() == shown, (path, header)
    assert frame.locator("tbody tr").first.is_visible(), path
    if frame.locator("a.download").count() == 0:  # too large to embed: the page names the file
        assert "too large to embed" in header and source.name in header, (path, header)
        return frame
    with page.expect_download() as download:
        frame.locator("a.download").click()
    assert download.value.suggested_filename == source.name
    assert Path(download.value.path()).read_bytes() == source.read_bytes(), path
    return frame


def _sorts(frame, column: str) -> None:
    """A click on a column header sorts the rows by it, ascending; a second click, descending
    (empty cells last both times)."""
    header = frame.locator("thead th").filter(has_text=re.compile(f"^{re.escape(column)}$"))
    index = frame.locator("thead th").all_inner_texts().index(column)
    for order in ("ascending", "descending"):
        header.click()
        assert header.get_attribute("aria-sort") == order
        cells = frame.locator(f"tbody tr td:nth-child({index + 1})").evaluate_all(
            "cells => cells.map(c => c.textContent)"
        )
        values = [float(v) for v in cells if v != ""]
        assert values == sorted(values, reverse=order == "descending"), (column, values)
        assert cells[len(values) :] == [""] * (len(cells) - len(values)), column


def _caption(page, row, path: str) -> str:
    """Click the (i) button: the result's description in the sidebar."""
    row.locator("td").last.locator("a").nth(1).click()
    heading = _sidebar(page).locator("li").filter(has_text=re.compile("^description$", re.I))
    caption = heading.locator("xpath=following-sibling::li[1]")
    caption.wait_for(state="visible")
    text = caption.inner_text()
    assert len(text.strip()) > 40, (path, text)
    return text


def test_report_in_a_browser(run_dir, report_page):
    page = report_page
    _artifact(page, "report_landing.png")
    assert page.locator("#loading-screen").is_hidden()
    assert page.get_by_text("Where the rest is").is_visible()

    categories = page.evaluate("categories")
    results = page.evaluate("results")
    listed = {
        path for subcats in categories.values() for paths in subcats.values() for path in paths
    }
    on_disk = {
        str(path.relative_to(run_dir))
        for kind in ("figures/*.png", "tables/*.html")
        for path in (run_dir / "results").glob(f"*/{kind}")
    }
    assert on_disk == listed, sorted(on_disk ^ listed)
    csvs = sorted((run_dir / "results").glob("*/tables/*.csv"))
    assert len(csvs) >= 12 and all(p.with_suffix(".html").is_file() for p in csvs)

    # The landing page leads with the main result: its first links open the leaderboard's
    # figure and table, each with its description.
    links = page.locator("#app .prose a[href^='javascript:']")
    assert links.all_inner_texts()[:2] == ["leaderboard figure", "leaderboard table"]
    main = {name: [p for p in listed if Path(p).name == name] for name in (MAIN_FIGURE, MAIN_TABLE)}
    assert all(len(paths) == 1 for paths in main.values()), main
    links.nth(0).click()
    _shown_figure(page, main[MAIN_FIGURE][0], run_dir)
    assert _sidebar(page).get_by_text("The main result first").is_visible()
    _artifact(page, "report_figure.png")
    _home(page)
    page.locator("#app .prose a[href^='javascript:']").nth(1).click()
    frame = _shown_table(page, main[MAIN_TABLE][0], run_dir)
    assert _sidebar(page).get_by_text("The main result as a table").is_visible()
    _sorts(frame, "rho_oriented")
    _artifact(page, "report_table.png")

    # Every figure and table, the way a reader reaches it: menu, folder, eye and (i) buttons.
    hard_to_read, tables = {}, []
    for category, subcategories in categories.items():
        for subcategory, paths in subcategories.items():
            _open_subcategory(page, category, subcategory)
            assert _sidebar(page).locator("table tbody tr").count() == len(paths), subcategory
            for path in paths:
                row = _sidebar(page).locator("table tbody tr").filter(has_text=path)
                assert row.count() == 1, (subcategory, path)
                row.locator("td").last.locator("a").nth(0).click()  # the eye button
                if results[path]["mime_type"] == "image/png":
                    hard_to_read[path] = _shown_figure(page, path, run_dir)
                else:
                    assert results[path]["mime_type"] == "text/html", path
                    _shown_table(page, path, run_dir)
                    tables.append(path)
                _caption(page, row, path)
                _open_subcategory(page, category, subcategory)
    assert len(hard_to_read) >= 10 and len(tables) == len(csvs)

    assert not page.problems, "the report's page reported errors:\n" + "\n".join(page.problems)
    notes = [f"{path}: {'; '.join(n)}" for path, n in sorted(hard_to_read.items()) if n]
    if notes:
        warnings.warn("figures hard to read in the report:\n" + "\n".join(notes), stacklevel=1)
