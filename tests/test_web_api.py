"""The dashboard's JSON API, token rule, security headers and OpenAPI document, against the shared
10-minute simulation (tests/conftest.py `sim_db`), through the ASGI app in process."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from conftest import NOW_NS, pinned_settings, run_async
from telltale.analyses.overview import overview
from telltale.analyses.trace_detail import load_trace
from telltale.sim import SimResult
from telltale.store import Store
from telltale.web.app import build_web_app
from telltale.web.auth import COOKIE, session_value

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TELLTALE_UPDATE_GOLDEN") == "1"


class Client:
    """A synchronous client over the ASGI app (httpx's ASGI transport, no server)."""

    def __init__(self, app: Starlette, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = headers or {}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                         headers=self.headers) as client:
                return await client.get(path, **kwargs)
        return run_async(go())


@pytest.fixture(scope="module")
def client(sim_db: Path) -> Client:
    return Client(build_web_app(pinned_settings(sim_db)))


def stored_spans(sim: SimResult) -> Counter[str]:
    """Spans per service the simulator made that are valid (no injected defect), counted from
    its Arrow tables rather than through the store."""
    out: Counter[str] = Counter()
    for table in (sim.spans, sim.agent_spans):
        for service, defect in zip(table.column("ServiceName").to_pylist(),
                                   table.column("Defect").to_pylist(), strict=True):
            if defect is None:
                out[service] += 1
    return out


def test_overview_counts_every_stored_span_per_service(client: Client, sim: SimResult) -> None:
    body = client.get("/api/overview").json()
    expected = stored_spans(sim)
    assert {s["service"]: s["spans"] for s in body["services"]} == dict(expected)
    assert body["spans"] == sum(expected.values()) == body["counts"]["spans"]
    assert 0 < body["errors"] < body["spans"]
    assert 0 < body["quality_score"] <= 1
    # The default window is the data's own range, not "now" (the pinned clock is days before it).
    win = body["window"]
    assert win["since_ns"] == win["data_since_ns"] >= sim.config.start_ns > NOW_NS
    assert win["until_ns"] == win["data_until_ns"] + 1


def test_overview_matches_golden(client: Client) -> None:
    body = client.get("/api/overview").json()
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    path = GOLDEN / "web_api_overview.json"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), "regenerate with TELLTALE_UPDATE_GOLDEN=1 and review the diff"


def test_window_narrows_the_overview(client: Client) -> None:
    whole = client.get("/api/overview").json()
    last = client.get("/api/overview", params={"last": "1m"}).json()
    hi = whole["window"]["data_until_ns"]
    assert last["window"]["since_ns"] == hi + 1 - 60 * 10**9
    assert 0 < last["spans"] < whole["spans"] / 5  # one minute of a ten-minute run


def test_trace_search_filters_and_trace_detail(client: Client, sim_db: Path) -> None:
    found = client.get("/api/trace-search", params={"service": "checkout", "errors": "true",
                                                    "limit": "5"}).json()["traces"]
    assert 0 < len(found) <= 5
    assert all(t["errors"] >= 1 for t in found)
    starts = [t["start_ns"] for t in found]
    assert starts == sorted(starts, reverse=True)
    trace = client.get(f"/api/trace/{found[0]['trace_id']}").json()
    with Store(sim_db, read_only=True) as store:
        direct = load_trace(store, found[0]["trace_id"])
    assert direct is not None
    assert [s["span_id"] for s in trace["spans"]] == [s.span_id for s in direct.spans]
    assert len(trace["spans"]) == found[0]["spans"]
    assert any(s["service"] == "checkout" and s["error"] for s in trace["spans"])
    segments = trace["critical_path"][0]["rows"]
    assert abs(sum(r["share_pct"] for r in segments) - 100.0) < 1e-6


def test_duration_and_attribute_filters(client: Client) -> None:
    slow = client.get("/api/trace-search", params={"min_duration": "500ms", "limit": "20"}).json()
    assert slow["traces"]
    for t in slow["traces"]:
        detail = client.get(f"/api/trace/{t['trace_id']}").json()
        assert max(s["duration_ns"] for s in detail["spans"]) >= 500_000_000
    route = client.get("/api/trace-search", params={"attr": "http.route=/checkout",
                                                    "limit": "3"}).json()["traces"]
    assert route
    for t in route:
        spans = client.get(f"/api/trace/{t['trace_id']}").json()["spans"]
        assert any(s["attributes"].get("http.route") == "/checkout" for s in spans)


def test_analyses_endpoints(client: Client, sim_db: Path) -> None:
    prof = client.get("/api/profile", params={"by": "service", "sort": "count"}).json()["result"]
    counts = [r["count"] for r in prof["rows"]]
    assert counts == sorted(counts, reverse=True)
    heat = client.get("/api/heatmap", params={"service": "checkout"}).json()["result"]
    assert {r["service"] for r in heat["rows"]} == {"checkout"}
    graph = client.get("/api/service-map").json()["result"]
    assert {"caller": "frontend", "callee": "gateway"}.items() <= {
        k: v for r in graph["rows"] if r["callee"] == "gateway" and r["caller"] == "frontend"
        for k, v in r.items()}.items()
    quality = client.get("/api/quality", params={"by": "service"}).json()["report"]
    with Store(sim_db, read_only=True) as store:
        services = {s.service for s in overview(store).services}
    assert {g["key"] for g in quality["groups"]} >= services
    assert client.get("/api/agents").json()["summary"]["rows"]
    assert client.get("/api/ci").json()["runs"]["rows"]
    assert client.get("/api/logs").json()["logs"] > 0


@pytest.mark.parametrize(("path", "params", "fragment"), [
    ("/api/overview", {"last": "soon"}, "bad duration"),
    ("/api/overview", {"since": "2026-01-15T10:05:00Z", "until": "2026-01-15T10:00:00Z"}, "empty"),
    ("/api/trace-search", {"limit": "0"}, "limit"),
    ("/api/trace-search", {"min_duration": "fast"}, "min_duration"),
    ("/api/trace-search", {"attr": "no-equals-sign"}, "key=value"),
    ("/api/trace-search", {"errors": "maybe"}, "errors"),
    ("/api/profile", {"by": "host"}, "by must be"),
    ("/api/trace/not-hex", {}, "hex"),
])
def test_bad_parameters_are_400_with_one_line(client: Client, path: str, params: dict[str, str],
                                              fragment: str) -> None:
    reply = client.get(path, params=params)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()["error"]
    assert fragment in message and "\n" not in message


def test_unknown_trace_is_404(client: Client) -> None:
    assert client.get("/api/trace/" + "ab" * 16).status_code == 404


def test_read_only(client: Client) -> None:
    async def post() -> int:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.post("/api/overview", content=b"{}")).status_code
    assert run_async(post()) == 405


def test_security_headers(client: Client) -> None:
    for path in ("/", "/api/overview", "/static/style.css"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


def test_token_rule(sim_db: Path) -> None:
    app = build_web_app(pinned_settings(sim_db), token="s3cret")
    anonymous = Client(app)
    assert anonymous.get("/api/overview").status_code == 401
    assert anonymous.get("/").status_code == 401
    assert anonymous.get("/api/health").status_code == 200
    assert anonymous.get("/static/app.js").status_code == 200
    assert Client(app, {"Authorization": "Bearer wrong"}).get("/api/overview").status_code == 401
    assert Client(app, {"Authorization": "Bearer s3cret"}).get("/api/overview").status_code == 200
    assert anonymous.get("/login", params={"token": "wrong"}).status_code == 401
    login = anonymous.get("/login", params={"token": "s3cret"})
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "s3cret" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert value == session_value("s3cret")
    with_cookie = Client(app, {"Cookie": f"{COOKIE}={value}"})
    assert with_cookie.get("/").status_code == 200
    assert Client(app, {"Cookie": f"{COOKIE}=forged"}).get("/").status_code == 401


def test_openapi_is_valid_and_describes_every_api_route(client: Client) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    doc = client.get("/api/openapi.json").json()
    validator.validate(doc)
    routes = {getattr(r, "path", "") for r in client.app.routes}
    api = {p.replace(":path", "") for p in routes if p.startswith("/api/")}
    assert api <= set(doc["paths"]), api - set(doc["paths"])
    for path in ("/api/services", "/api/traces", "/api/dependencies", "/api/overview",
                 "/api/trace-search", "/api/trace/{trace_id}"):
        assert path in doc["paths"]
    for path in ("/api/trace-search", "/api/traces", "/api/traces/{trace_id}"):
        assert doc["paths"][path]["get"]["parameters"], path  # described, not a bare stub
