"""The dashboard's server-rendered pages against the shared simulation: status codes, content
(names and counts checked against the analyses), links between pages, escaping, 400 / 404."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest

from conftest import pinned_settings
from telltale.analyses.log_analytics import template_counts
from telltale.analyses.trace_detail import search_traces
from telltale.sim import SimResult
from telltale.store import Store
from telltale.web.app import build_web_app
from test_web_api import Client, stored_spans

PAGES = ["/", "/services", "/map", "/traces", "/quality", "/quality?by=service", "/logs", "/ci",
         "/agents", "/more"]


@pytest.fixture(scope="module")
def client(sim_db: Path) -> Client:
    return Client(build_web_app(pinned_settings(sim_db)))


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders(client: Client, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 200, reply.text[:500]
    assert reply.headers["content-type"].startswith("text/html")
    assert "<h1>" in reply.text and "Traceback" not in reply.text
    # Nothing external: every script and stylesheet is served locally.
    assert not re.search(r"""(src|href)=["']https?://""", reply.text)


def test_overview_names_every_service_with_its_count(client: Client, sim: SimResult) -> None:
    html = client.get("/").text
    table = html[html.index('id="services"'):]
    for service, n in stored_spans(sim).items():
        assert f">{service}</a>" in table
        assert f"{n:,}" in table
    total = sum(stored_spans(sim).values())
    assert re.search(rf'id="total-spans">{total:,}<', html)


def test_service_page_profile_and_links(client: Client, sim_db: Path) -> None:
    html = client.get("/services/checkout").text
    assert "Service <span class=\"name\">checkout</span>" in html
    assert "<svg" in html  # the heatmap
    assert 'href="/traces?service=checkout"' in html
    assert "gateway" in text_of(html[html.index("Called by"):])  # its caller
    assert client.get("/services/no-such-service").status_code == 404


def test_trace_search_page_lists_traces_that_link_to_their_view(client: Client,
                                                                sim_db: Path) -> None:
    html = client.get("/traces", params={"service": "payment", "errors": "true",
                                         "limit": "7"}).text
    with Store(sim_db, read_only=True) as store:
        expected = search_traces(store, service="payment", errors_only=True, limit=7)
    links = re.findall(r'href="/traces/([0-9a-f]{32})"', html)
    assert links == [t.trace_id for t in expected]
    assert f"{len(expected)} traces" in html
    view = client.get(f"/traces/{links[0]}").text
    assert re.search(rf'id="span-count">{expected[0].spans}<', view)
    assert view.count('<details class="span') == expected[0].spans
    assert "critical" in view and "<svg" in view


def test_trace_view_lists_the_trace_logs_attached_to_their_spans(client: Client,
                                                                 sim_db: Path) -> None:
    with Store(sim_db, read_only=True) as store:
        rows = store.query("SELECT TraceId, SpanId, Body FROM otel_logs WHERE TraceId <> '' AND "
                           "SpanId <> '' AND SeverityNumber >= 17 ORDER BY Timestamp LIMIT 1")
    trace_id, span_id, body = rows[0]
    view = client.get(f"/traces/{trace_id}").text
    table = view[view.index('id="trace-logs"'):]
    table = table[:table.index("</table>")]
    assert body in unescape(table)
    assert f'href="#span-{span_id}"' in table and 'class="error"' in table
    assert f'id="span-{span_id}"' in view  # the link lands on the span's details


def test_logs_page_lists_templates_with_counts_and_error_share(client: Client,
                                                               sim_db: Path) -> None:
    with Store(sim_db, read_only=True) as store:
        expected = template_counts(store, top=100).templates
    html = client.get("/logs").text
    table = html[html.index('id="templates"'):html.index("</table>", html.index('id="templates"'))]
    rows = re.findall(r'<tr><td class="num">(\d+)</td><td><code>(.*?)</code></td>'
                      r'<td class="num">([\d,]+)</td>', table)
    assert [(int(i), unescape(t), int(n.replace(",", ""))) for i, t, n in rows] == [
        (t.template_id, t.template, t.records) for t in expected]
    assert any(t.errors for t in expected) and 'class="num bad"' in table
    # With a window start, the page compares against the window before it.
    start = min(t.first_ns for t in expected)
    trend_html = client.get("/logs", params={"since": str(start + 300 * 10**9),
                                             "until": str(start + 600 * 10**9)}).text
    assert "Against the window before" in trend_html
    assert 'id="new-templates"' in trend_html or "No template is new" in trend_html


def test_trace_view_escapes_telemetry(client: Client, sim_db: Path) -> None:
    html = client.get("/traces", params={"limit": "1"}).text
    tid = re.findall(r'href="/traces/([0-9a-f]{32})"', html)[0]
    view = client.get(f"/traces/{tid}").text
    assert "<script>" not in view.lower().replace('<script src="/static/app.js" defer>', "")


def test_search_form_echoes_input_escaped(client: Client) -> None:
    html = client.get("/traces", params={"operation": '"><script>alert(1)</script>'}).text
    assert "<script>alert(1)" not in html
    assert "&#34;&gt;&lt;script&gt;" in html or "&quot;&gt;&lt;script&gt;" in html


def test_bad_window_is_a_400_page(client: Client) -> None:
    reply = client.get("/services", params={"last": "forever"})
    assert reply.status_code == 400
    assert "bad duration" in text_of(reply.text)
    assert client.get("/traces/not-a-trace").status_code == 400
    assert client.get("/traces/" + "cd" * 16).status_code == 404


def test_quality_page_shows_the_score_and_quarantine(client: Client) -> None:
    html = client.get("/quality").text
    score = re.search(r'id="quality-score"><span class="score \w+">([0-9.]+)<', html)
    assert score is not None and 0 < float(score.group(1)) <= 1
    api = client.get("/api/quality").json()["report"]
    assert f"{api['total']['score']:.3f}" == score.group(1)


def test_window_is_kept_in_navigation(client: Client) -> None:
    html = client.get("/services", params={"last": "5m"}).text
    assert 'href="/map?last=5m"' in html
    assert "(all data)" not in html
    assert "(all data)" in client.get("/services").text


def test_empty_store_pages_say_no_data(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    Store(path, settings=pinned_settings(path)).close()
    empty = Client(build_web_app(pinned_settings(path)))
    for page in PAGES:
        reply = empty.get(page)
        assert reply.status_code == 200, (page, reply.text[:400])
    assert "No spans in this window yet" in empty.get("/").text
    assert "No CI data yet" in empty.get("/ci").text
    assert "No agent spans" in empty.get("/agents").text


def test_missing_store_is_503(tmp_path: Path) -> None:
    missing = Client(build_web_app(pinned_settings(tmp_path / "none.duckdb")))
    assert missing.get("/").status_code == 503
    assert missing.get("/api/overview").status_code == 503
