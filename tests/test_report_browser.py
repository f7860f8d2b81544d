"""The tiny run's `snakemake --report` as a reader sees it: rendered by headless Chromium (the
Debian package that `make test` installs, driven by Playwright, which downloads no browser of
its own). The report is a JavaScript single-page app, so grepping its HTML (test_workflow.py)
cannot tell whether it loads, whether every figure opens, or whether each table downloads.
Screenshots of the landing page and of the main figure go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import csv
import io
import re
import shutil
import warnings
from pathlib import Path

import pytest
from test_workflow import REPO, snakemake, tiny_config

ARTIFACTS = REPO / "test-artifacts"
VIEWPORT = {"width": 1600, "height": 1000}  # a laptop screen
MIN_SIDE = 200  # px: a figure smaller than this is a placeholder or broken, not a plot
# Figures are saved at 120 dpi with 10 pt text (~17 px per em); shown at less than this
# fraction of their size in the report, their labels drop below ~9 px.
MIN_SCALE = 0.55
MAIN_FIGURE = "correlations.png"  # the result report/workflow.rst links from the landing page


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


@pytest.fixture(scope="module")
def report_page(tiny_run, browser):
    """The report opened like a reader opens it, with every console error and uncaught
    exception of the page collected in ``page.problems``."""
    report = tiny_run / "report.html"
    if not report.is_file():  # test_workflow.py may have made it already in this session
        snakemake(tiny_run, tiny_config(), "--report", str(report))
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


def _artifact(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path)
    print(f"screenshot: {path}")
    return path


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


def _shown_figure(page, path: str) -> list[str]:
    """The figure on display must be ``path`` as a real image. Returns what makes it hard to
    read in the report (the plotting code's business, so not a failure here)."""
    image = page.locator("#app > div > div.grow img")
    image.wait_for(state="visible")
    shown = image.evaluate(
        "img => img.decode().then(() => ({natural: [img.naturalWidth, img.naturalHeight],"
        " box: img.getBoundingClientRect().toJSON(), src: img.currentSrc.slice(0, 14)}))"
    )
    assert shown["src"] == "data:image/png", (path, shown)
    assert min(shown["natural"]) > MIN_SIDE, (path, shown)
    assert page.evaluate("app.state.resultPath") == path
    scale = shown["box"]["width"] / shown["natural"][0]
    notes = []
    if scale < MIN_SCALE:
        notes.append(f"{shown['natural'][0]} px wide, shown at {scale:.0%}")
    if shown["box"]["top"] < -1:  # centred in a scrolling box: what sticks out on top is lost
        notes.append(f"top {-shown['box']['top']:.0f} px cut off (taller than the window)")
    return notes


def _table_rows(page, row, path: str) -> int:
    """Click the table's eye button: the report hands the CSV over as a download."""
    eye = row.locator("td").last.locator("a").nth(0)
    assert eye.get_attribute("download") == Path(path).name, path
    with page.expect_download() as download:
        eye.click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows[0]) > 1 and len(rows) > 2, (path, rows[:3])
    return len(rows) - 1


def _caption(page, row, path: str) -> str:
    """Click the (i) button: the result's description in the sidebar."""
    row.locator("td").last.locator("a").nth(1).click()
    heading = _sidebar(page).locator("li").filter(has_text=re.compile("^description$", re.I))
    caption = heading.locator("xpath=following-sibling::li[1]")
    caption.wait_for(state="visible")
    text = caption.inner_text()
    assert len(text.strip()) > 40, (path, text)
    return text


def test_report_in_a_browser(tiny_run, report_page):
    page = report_page
    _artifact(page, "report_landing.png")
    assert page.locator("#loading-screen").is_hidden()
    assert page.get_by_text("Where the results are").is_visible()

    categories = page.evaluate("categories")
    results = page.evaluate("results")
    listed = {
        path for subcats in categories.values() for paths in subcats.values() for path in paths
    }
    on_disk = {
        str(path.relative_to(tiny_run))
        for kind in ("figures/*.png", "tables/*.csv")
        for path in (tiny_run / "results").glob(f"*/{kind}")
    }
    assert on_disk == listed, sorted(on_disk ^ listed)

    # The landing page links the main result; one click shows it with its description.
    main = [path for path in listed if Path(path).name == MAIN_FIGURE]
    assert len(main) == 1, main
    link = page.locator(f"#app a[href^='javascript:']:text-is({main[0]!r})")
    assert link.count() == 1, "no link to the main result on the landing page"
    link.click()
    _shown_figure(page, main[0])
    assert _sidebar(page).get_by_text("The main result").is_visible()
    _artifact(page, "report_figure.png")

    # Every figure and table, the way a reader reaches it: menu, folder, eye and (i) buttons.
    hard_to_read = {}
    for category, subcategories in categories.items():
        for subcategory, paths in subcategories.items():
            _open_subcategory(page, category, subcategory)
            assert _sidebar(page).locator("table tbody tr").count() == len(paths), subcategory
            for path in paths:
                row = _sidebar(page).locator("table tbody tr").filter(has_text=path)
                assert row.count() == 1, (subcategory, path)
                if results[path]["mime_type"] == "image/png":
                    row.locator("td").last.locator("a").nth(0).click()
                    hard_to_read[path] = _shown_figure(page, path)
                else:
                    assert results[path]["mime_type"] == "text/csv", path
                    _table_rows(page, row, path)
                _caption(page, row, path)
                _open_subcategory(page, category, subcategory)
    assert len(hard_to_read) >= 10

    assert not page.problems, "the report's page reported errors:\n" + "\n".join(page.problems)
    notes = [f"{path}: {'; '.join(n)}" for path, n in sorted(hard_to_read.items()) if n]
    if notes:
        warnings.warn("figures hard to read in the report:\n" + "\n".join(notes), stacklevel=1)
