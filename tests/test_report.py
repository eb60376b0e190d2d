"""The HTML report: a golden file from a small hand-made store, self-containment (nothing
fetched from anywhere), escaping of hostile telemetry, the numbers it shows, and the CLI."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from conftest import MS, NOW_NS, T0, jsonl, pinned_settings, sid, span, tid, trace_request
from telltale.cli import main
from telltale.commands import report as report_command
from telltale.ingest import ingest_bytes
from telltale.report.collect import collect
from telltale.report.html import render_html, write_report
from telltale.settings import ENV_DB
from telltale.store import Store

GOLDEN = Path(__file__).parent / "golden" / "report_small.html"
UPDATE = os.environ.get("TELLTALE_UPDATE_GOLDEN") == "1"
HOSTILE_OP = "query <script>alert('x')</script> & \"q\""
HOSTILE_SVC = "evil<svc>&\"'"
TRACES = 20


def build(path: Path) -> None:
    """20 requests 10 s apart: web GET /checkout → (client) → db-svc query, and → the hostile
    service; every 5th query fails. Durations grow with the request number."""
    requests = []
    for i in range(TRACES):
        t, start = tid(i + 1), T0 + i * 10_000 * MS
        root, client, db, evil = sid(4 * i + 1), sid(4 * i + 2), sid(4 * i + 3), sid(4 * i + 4)
        fails = i % 5 == 4
        requests.append(trace_request([
            span(t, root, "GET /checkout", start=start, end=start + (50 + i) * MS, kind=2,
                 status=2 if fails else None),
            span(t, client, "SELECT", parent=root, start=start + 2 * MS,
                 end=start + (12 + i) * MS, kind=3, status=2 if fails else None,
                 attributes={"db.system": "postgresql"}),
        ], service="web"))
        requests.append(trace_request([
            span(t, db, HOSTILE_OP, parent=client, start=start + 3 * MS,
                 end=start + (11 + i) * MS, kind=2, status=2 if fails else None,
                 message="deadlock <detected>" if fails else ""),
        ], service="db-svc"))
        requests.append(trace_request([
            span(t, evil, "evil op", parent=root, start=start + 20 * MS, end=start + 30 * MS,
                 kind=2),
        ], service=HOSTILE_SVC))
    with Store(path, settings=pinned_settings(path)) as store:
        ingest_bytes(store, jsonl(requests), source="small.jsonl")


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "small.duckdb"
    build(path)
    return path


@pytest.fixture(scope="module")
def html(small_db: Path) -> str:
    with Store(small_db, settings=pinned_settings(small_db), read_only=True) as store:
        return render_html(collect(store, now_ns=NOW_NS))


class Refs(HTMLParser):
    """Every URL-bearing attribute and every tag, to check what the page would fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for key, value in attrs:
            if key in ("src", "href", "xlink:href", "action", "poster", "data", "srcset"):
                self.urls.append((tag, key, value or ""))
            if key == "id" and value:
                self.ids.add(value)


def test_golden(html: str) -> None:
    if UPDATE:
        GOLDEN.write_text(html, encoding="utf-8")
    assert html == GOLDEN.read_text(encoding="utf-8"), \
        "regenerate with TELLTALE_UPDATE_GOLDEN=1 and review the diff"


def test_self_contained(html: str) -> None:
    refs = Refs()
    refs.feed(html)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & refs.tags
    # The only links are in-page anchors, and each points at an element that exists.
    assert refs.urls, "the table of contents links to the sections"
    for tag, key, url in refs.urls:
        assert (tag, key) == ("a", "href") and url.startswith("#"), url
        assert url[1:] in refs.ids, f"dangling anchor {url}"
    # No URL the browser would load: the SVG namespace declaration is a name, not a fetch.
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html)
    assert "url(" not in html and "@import" not in html


def test_hostile_names_escaped(html: str) -> None:
    assert "<script" not in html
    assert "query &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html \
        or "query &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "evil<svc>" not in html and "evil&lt;svc&gt;&amp;" in html
    assert "deadlock <detected>" not in html


def test_numbers_and_names(small_db: Path, html: str) -> None:
    with Store(small_db, settings=pinned_settings(small_db), read_only=True) as store:
        data = collect(store, now_ns=NOW_NS)
    assert data.spans == 4 * TRACES and data.errors == 3 * (TRACES // 5)
    assert data.problems == []
    services = {r.service: r for r in data.services.rows} if data.services else {}
    assert set(services) == {"web", "db-svc", HOSTILE_SVC}
    assert services["web"].count == 2 * TRACES and services["web"].errors == 2 * (TRACES // 5)
    # Every trace is whole: the quality score is 100 %, and it is shown.
    assert data.quality is not None and data.quality.total.score == 1.0
    assert re.search(r'<div class="value">100\.0%</div>\s*<div class="name">trace quality score',
                     html)
    for name in ("web", "db-svc", "GET /checkout"):
        assert name in html
    assert ">80</div><div class=\"name\">spans" in html  # the spans card
    # Slowest traces: the last request (the slowest), one per root service.
    assert [s.trace_id for s in data.slow] == [tid(TRACES)]
    assert f"trace-{tid(TRACES)}" in html
    # The window and the pinned generation time are in the header.
    assert "generated 2026-01-01 00:00:00 UTC" in html
    assert "spans from 2025-01-01 00:00:00 UTC" in html
    # Findings that have no data say so instead of failing.
    leads = {f.key: f for f in data.findings}
    assert not any(f.failed for f in data.findings)
    assert leads["flaky-ci"].rows is None and leads["agents"].rows is None
    assert "no agent spans" in leads["agents"].lead


def test_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    with Store(path, settings=pinned_settings(path)) as store:
        data = write_report(store, tmp_path / "out" / "r.html", now_ns=NOW_NS)
    text = (tmp_path / "out" / "r.html").read_text()
    assert data.spans == 0 and data.slow == [] and data.problems == []
    assert "No spans in this window." in text and "No root spans in this window." in text
    assert "</html>" in text


def test_cli(small_db: Path, tmp_path: Path) -> None:
    if "report" not in main.commands:  # until cli.COMMAND_MODULES lists it
        report_command.register(main)
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    out = tmp_path / "r.html"
    res = runner.invoke(main, ["--db", str(small_db), "report", "--html", str(out)])
    assert res.exit_code == 0, res.output
    first, second = res.output.splitlines()[:2]
    assert first == str(out)
    assert second.startswith("80 spans, 12 errors, 3 services, quality score 100.0%")
    assert "db-svc" in out.read_text()
    # A window with nothing in it still writes a report; JSON says what is in it.
    res = runner.invoke(main, ["--db", str(small_db), "report", "--html", str(out), "--format",
                               "json", "--since", "2030-01-01T00:00:00Z"])
    assert res.exit_code == 0, res.output
    info = orjson.loads(res.output)
    assert info["spans"] == 0 and info["path"] == str(out)
    res = runner.invoke(main, ["--db", str(small_db), "report", "--html", str(out), "--last",
                               "nonsense"])
    assert res.exit_code == 1 and "Traceback" not in res.output
