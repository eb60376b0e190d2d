"""The report of a simulated system, opened in headless Chromium: it renders with nothing
fetched from the network and no script errors, every chart has a size, the table of contents
resolves, and the findings the simulator injected show up. A full-page screenshot is saved
under tests/artifacts/ for a person to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import NOW_NS
from telltale.report.html import write_report
from telltale.store import Store

CHROMIUM = Path(os.environ.get("TELLTALE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"no Chromium at {CHROMIUM} (CI installs it)")


def test_report_in_chromium(sim_store: Store, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    path = tmp_path / "report.html"
    data = write_report(sim_store, path, now_ns=NOW_NS)
    assert data.problems == []
    found = {f.key for f in data.findings if f.rows is not None}
    # The simulator injects a version regression, an N+1 and a flaky CI job, among others.
    assert {"regressions", "n-plus-one", "flaky-ci"} <= found, found
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report_sim.png"), full_page=True)
            sizes = page.eval_on_selector_all(
                "svg.tt-svg", "els => els.map(e => [e.getAttribute('class'), "
                "e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
            anchors = page.eval_on_selector_all(
                "nav a", "els => els.map(a => [a.getAttribute('href'), "
                "!!document.getElementById(a.getAttribute('href').slice(1))])")
            score = page.inner_text(".card.score .value")
            finding_tables = page.locator(".finding.found table").count()
        finally:
            browser.close()
    assert requests == [path.as_uri()], "the page loaded something besides itself"
    assert errors == []
    kinds = {cls.split()[1] for cls, _, _ in sizes}
    assert {"tt-volume", "tt-heatmap", "tt-service-map", "tt-waterfall", "tt-bars"} <= kinds
    assert all(w > 100 and h > 20 for _, w, h in sizes), sizes
    assert anchors and all(ok for _, ok in anchors), anchors
    assert score.endswith("%") and 0 < float(score[:-1]) <= 100
    assert finding_tables == len(found)
