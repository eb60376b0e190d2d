"""The dashboard in a real browser: Debian's chromium driven by playwright against a uvicorn
server over the shared simulation. Loads every page, checks content against the simulator's own
numbers, clicks from the service map to a trace, and saves full-page screenshots under
tests/artifacts/web/ (look at them: a page can pass every assertion and still look broken)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from conftest import pinned_settings
from telltale.sim import SimResult
from telltale.web.app import build_web_app
from test_web_api import stored_spans

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts" / "web"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"browser tests need Debian's chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def base_url(sim_db: Path) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_web_app(pinned_settings(sim_db))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def page(base_url: str) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        tab = browser.new_page(viewport={"width": 1360, "height": 900})
        tab.set_default_timeout(15_000)
        problems: list[str] = []
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        tab.problems = problems
        yield tab
        browser.close()


def visit(page: Any, url: str, shot: str) -> None:
    reply = page.goto(url)
    assert reply is not None and reply.status == 200, url
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    # A CSP violation or a failed asset shows up as a console error.
    assert not page.problems, page.problems
    assert page.locator("h1").first.is_visible()


def test_every_page_loads_with_its_content(page: Any, base_url: str, sim: SimResult) -> None:
    expected = stored_spans(sim)
    visit(page, base_url + "/", "overview")
    assert page.locator("#total-spans").inner_text() == f"{sum(expected.values()):,}"
    rows = page.locator("#services tbody tr")
    assert rows.count() == len(expected)
    for service, n in expected.items():
        row = rows.filter(has=page.get_by_role("link", name=service, exact=True))
        assert row.locator("td").nth(1).inner_text() == f"{n:,}"

    visit(page, base_url + "/services", "services")
    assert page.locator("#service-profile tbody tr").count() == len(expected)
    assert page.locator("figure.chart svg").first.is_visible()

    visit(page, base_url + "/quality?by=service", "quality")
    score = float(page.locator("#quality-score").inner_text())
    assert 0 < score <= 1
    assert page.locator("#quality-groups tbody tr").count() >= len(expected)

    for path, name, marker in [("/logs", "logs", "records in the window"), ("/ci", "ci", "CI run summary"),
                               ("/agents", "agents", "Worst groups"), ("/more", "more", "Anomalies"),
                               ("/traces", "traces", "Trace search")]:
        visit(page, base_url + path, name)
        assert marker in page.locator("main").inner_text()


def test_click_from_the_service_map_to_a_trace(page: Any, base_url: str) -> None:
    visit(page, base_url + "/map", "map")
    svg_node = page.locator("figure.map svg a[href='/services/checkout']")
    if svg_node.count():
        svg_node.first.click()
    else:
        page.locator("#edges a.node", has_text=re.compile(r"^checkout$")).first.click()
    page.wait_for_url(re.compile(r"/services/checkout$"))
    page.screenshot(path=str(ARTIFACTS / "service-checkout.png"), full_page=True)
    assert "checkout" in page.locator("h1").inner_text()
    assert page.locator("#operation-profile tbody tr").count() >= 1

    page.locator("#service-traces").click()
    page.wait_for_url(re.compile(r"/traces\?service=checkout"))
    page.screenshot(path=str(ARTIFACTS / "trace-search.png"), full_page=True)
    found = page.locator("#results tbody tr")
    assert found.count() >= 1
    spans = int(found.first.locator("td").nth(4).inner_text().replace(",", ""))

    found.first.locator("a.trace-link").click()
    page.wait_for_url(re.compile(r"/traces/[0-9a-f]{32}$"))
    assert page.locator("#span-count").inner_text() == str(spans)
    assert page.locator("details.span").count() == spans
    assert page.locator("details.span.critical").count() >= 1
    assert page.locator("figure.waterfall svg").is_visible()
    page.locator("details.span summary").first.click()  # open the root's details
    assert page.locator("details.span").first.locator("table.kv").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "trace.png"), full_page=True)
    assert not page.problems, page.problems
