"""Handler coverage: the fixture app's handlers (Python decorators and route tables, Express),
matched to hand-built spans; exact exercised / never-exercised lists, counts and unknowns."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from conftest import MS, T0, S, jsonl, pinned_settings, sid, span, tid, trace_request
from telltale.analyses.code_scan import DEFAULT_PATTERNS, HandlerKind, Pattern, scan
from telltale.analyses.coverage import CoverageReport, coverage
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.settings import ENV_DB
from telltale.store import Store

APP = Path(__file__).parent / "fixtures" / "coverage_app"

# (file, line, kind, function, route, methods) of every handler in the fixture app.
HANDLERS = [
    ("app/legacy.py", 10, "route", "app.legacy.login", "/login", ("GET", "POST")),
    ("app/legacy.py", 15, "route", "app.legacy.show_order", "/orders/<int:order_id>", ("GET", "HEAD")),
    ("app/legacy.py", 23, "route", "app.legacy.export_csv", "/export", ("GET", "HEAD")),
    ("app/main.py", 11, "route", "app.main.health", "/health", ("GET",)),
    ("app/main.py", 16, "route", "app.main.get_user", "/users/{user_id}", ("GET",)),
    ("app/main.py", 21, "route", "app.main.create_user", "/users", ("POST",)),
    ("app/main.py", 26, "route", "app.main.item", "/items/{item_id}", ("GET", "PUT")),
    ("app/main.py", 31, "function", "app.main.Billing.charge", "", ()),
    ("app/main.py", 34, "function", "app.main.Billing.refund", "", ()),
    ("app/main.py", 38, "function", "app.main.helper", "", ()),
    ("app/urls.py", 8, "route", "views.yearly_report", "reports/<int:year>/", ()),
    ("web/server.js", 7, "route", "", "/api/products/:id", ("GET",)),
    ("web/server.js", 8, "route", "", "/api/cart", ("POST",)),
    ("web/server.js", 9, "route", "", "/api/cart/:itemId", ("DELETE",)),
]


def test_scan_finds_every_handler() -> None:
    found = scan(APP)
    assert [(h.file, h.line, h.kind.value, h.function, h.route, h.methods)
            for h in found.handlers] == HANDLERS
    assert found.unparsable == []
    assert found.files == 6  # the .py files and server.js; app.rb needs a --pattern


def test_unparsable_python_is_listed(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "broken.py").write_text("def oops(:\n    pass\n")
    (tmp_path / "pkg" / "fine.py").write_text("def ok() -> None:\n    pass\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "dep.js").write_text("app.get('/vendored', h);\n")
    found = scan(tmp_path)
    assert found.unparsable == ["pkg/broken.py"]
    assert [(h.file, h.function) for h in found.handlers] == [("pkg/fine.py", "pkg.fine.ok")]


def test_custom_pattern_and_validation() -> None:
    ruby = Pattern.parse('*.rb=^\\s*(?P<method>get|post) "(?P<route>/[^"]*)"')
    found = scan(APP, [*DEFAULT_PATTERNS, ruby])
    extra = [(h.file, h.line, h.route, h.methods) for h in found.handlers if h.file.endswith(".rb")]
    assert extra == [("web/app.rb", 2, "/status", ("GET",)), ("web/app.rb", 6, "/hooks/:name", ("POST",))]
    with pytest.raises(ValueError, match="named group"):
        Pattern.parse("*.rb=get (/x)")
    with pytest.raises(ValueError, match="bad regex"):
        Pattern.parse("*.rb=(?P<route>")
    with pytest.raises(ValueError, match="GLOB=REGEX"):
        Pattern.parse("no-equals-sign")


def _server(n: int, name: str, at: int, ms: int, route: str | None = None, error: bool = False,
            **attrs: Any) -> dict[str, Any]:
    a = dict(attrs)
    if route is not None:
        a["http.route"] = route
    return span(tid(n), sid(1), name, start=T0 + at * S, end=T0 + at * S + ms * MS, kind=2,
                status=2 if error else None, attributes=a or None)


def _data() -> bytes:
    shop = [
        _server(1, "GET /health", 1, 10, "/health", **{"http.request.method": "GET"}),
        _server(2, "GET /health", 2, 20, "/health", error=True, **{"http.request.method": "GET"}),
        _server(3, "GET /health", 3, 30, "/health", **{"http.request.method": "GET"}),
        _server(4, "GET /users/{id}", 4, 5, "/users/{id}"),
        _server(5, "GET /users/{id}", 5, 5, "/users/{id}"),
        _server(6, "PUT /items/{item_id}", 6, 5),  # route from the span name
        _server(7, "DELETE /items/{item_id}", 7, 5),  # no handler takes DELETE there
        _server(8, "POST /login", 8, 5, "/login"),
        _server(9, "GET /orders/:order_id", 9, 5, "/orders/:order_id"),
        _server(10, "DELETE /api/cart/{itemId}", 10, 5, "/api/cart/{itemId}"),
        _server(11, "GET /admin", 11, 5, "/admin"),
        _server(12, "GET /admin", 12, 5, "/admin", error=True),
        # An outgoing call named like a route is not a handler of this code.
        span(tid(13), sid(1), "GET /users/{id}", start=T0 + 13 * S, kind=3),
        span(tid(13), sid(2), "validate item", start=T0 + 13 * S, kind=1),
    ]
    worker = [
        span(tid(14), sid(1), "charge", start=T0 + 14 * S, kind=1,
             attributes={"code.function": "charge", "code.namespace": "app.main.Billing"}),
        span(tid(15), sid(1), "nightly", start=T0 + 15 * S, kind=1,
             attributes={"code.function.name": "jobs.nightly"}),
    ]
    return jsonl([trace_request(shop, service="shop"), trace_request(worker, service="worker")])


@pytest.fixture(scope="module")
def app_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("coverage") / "app.duckdb"
    with Store(path, settings=pinned_settings(path)) as store:
        ingest_bytes(store, _data(), source="app.jsonl")
    return path


@pytest.fixture
def app_store(app_db: Path) -> Iterator[Store]:
    with Store(app_db, settings=pinned_settings(app_db), read_only=True) as s:
        yield s


def _usage(report: CoverageReport) -> dict[str, tuple[int, int]]:
    return {f"{u.handler.route or u.handler.function}": (u.calls, u.errors)
            for u in report.handlers if u.exercised}


def test_exercised_and_never_exercised(app_store: Store) -> None:
    report = coverage(app_store, Scope(), scan(APP))
    assert _usage(report) == {
        "/login": (1, 0), "/orders/<int:order_id>": (1, 0), "/health": (3, 1),
        "/users/{user_id}": (2, 0), "/items/{item_id}": (1, 0), "/api/cart/:itemId": (1, 0),
        "app.main.Billing.charge": (1, 0),
    }
    never = [u.handler.route or u.handler.function for u in report.handlers if not u.exercised]
    assert never == ["/export", "/users", "app.main.Billing.refund", "app.main.helper",
                     "reports/<int:year>/", "/api/products/:id", "/api/cart"]
    health = next(u for u in report.handlers if u.handler.route == "/health")
    assert health.p95_ms == pytest.approx(29.0)  # quantile of 10, 20, 30 ms
    assert health.services == ("shop",)
    templates = {u.handler.route: u.template for u in report.handlers if u.handler.route}
    assert templates["/orders/<int:order_id>"] == "/orders/{}"
    assert templates["reports/<int:year>/"] == "/reports/{}"
    assert templates["/api/cart/:itemId"] == "/api/cart/{}"


def test_spans_unknown_to_the_code(app_store: Store) -> None:
    report = coverage(app_store, Scope(), scan(APP))
    assert [(u.service, u.kind.value, u.method, u.key, u.calls, u.errors) for u in report.unknown] == [
        ("shop", "route", "GET", "/admin", 2, 1),
        ("shop", "route", "DELETE", "/items/{}", 1, 0),
        ("worker", "function", "", "jobs.nightly", 1, 0),
    ]
    assert report.spans == 16 and report.code_spans == 2


def test_summary_and_rows(app_store: Store) -> None:
    rows = coverage(app_store, Scope(), scan(APP)).to_rows()
    assert rows.notes[:3] == ["routes: 6 of 11 exercised (54.5%)",
                              "functions: 1 of 3 exercised (33.3%)",
                              "4 spans name 3 routes/functions that match no handler in the code"]
    assert len(rows.notes) == 3
    statuses = [r["status"] for r in rows.rows]
    assert statuses == ["exercised"] * 7 + ["never exercised"] * 7 + ["unknown to code"] * 3
    assert rows.rows[0] == {"status": "exercised", "kind": "route", "method": "GET,POST",
                            "route": "/login", "function": "app.legacy.login", "file": "app/legacy.py",
                            "line": 10, "service": "shop", "calls": 1, "errors": 0,
                            "p95_ms": pytest.approx(5.0)}
    summary = rows.extra["summary"]
    assert summary["routes"] == {"handlers": 11, "exercised": 6, "percent": pytest.approx(600 / 11)}


def test_functions_not_measured_without_code_attributes(app_store: Store) -> None:
    """Only the shop's spans: none says which function ran, so functions are not reported."""
    report = coverage(app_store, Scope(services=("shop",)), scan(APP))
    assert not report.functions_measured
    rows = report.to_rows()
    assert all(r["kind"] == "route" for r in rows.rows)
    assert rows.notes[1].startswith("functions: not measured (3 found)")
    assert [u.key for u in report.unknown] == ["/admin", "/items/{}"]


def test_window_limits_the_spans(app_store: Store) -> None:
    report = coverage(app_store, Scope(since=T0 + 2 * S, until=T0 + 5 * S), scan(APP))
    assert _usage(report) == {"/health": (2, 1), "/users/{user_id}": (1, 0)}


def test_empty_tree_reports_everything_unknown(app_store: Store, tmp_path: Path) -> None:
    report = coverage(app_store, Scope(), scan(tmp_path))
    assert report.handlers == []
    assert sum(u.calls for u in report.unknown) == 14  # 12 server spans + 2 naming code functions


# -- CLI --------------------------------------------------------------------------------------

@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})


def test_cli_formats(runner: CliRunner, app_db: Path) -> None:
    res = runner.invoke(main, ["--db", str(app_db), "coverage", str(APP), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    assert doc["summary"]["routes"]["exercised"] == 6
    assert len(doc["rows"]) == 17
    res = runner.invoke(main, ["--db", str(app_db), "coverage", str(APP), "--format", "csv",
                               "--service", "shop"])
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["route"] for r in table if r["status"] == "unknown to code"] == ["/admin", "/items/{}"]
    res = runner.invoke(main, ["--db", str(app_db), "coverage", str(APP)])
    assert res.exit_code == 0 and "routes: 6 of 11 exercised (54.5%)" in res.stdout


def test_cli_patterns(runner: CliRunner, app_db: Path) -> None:
    ruby = '*.rb=^\\s*(?P<method>get|post) "(?P<route>/[^"]*)"'
    res = runner.invoke(main, ["--db", str(app_db), "coverage", str(APP), "--format", "json",
                               "--pattern", ruby, "--no-default-patterns"])
    assert res.exit_code == 0, res.output
    routes = [h["route"] for h in orjson.loads(res.stdout)["summary"]["handlers"]
              if h["kind"] == HandlerKind.ROUTE]
    assert "/status" in routes and "/api/cart" not in routes
    res = runner.invoke(main, ["--db", str(app_db), "coverage", str(APP), "--pattern", "*.rb=(x)"])
    assert res.exit_code == 1
    assert [ln for ln in res.stderr.splitlines() if ln] == [
        "Error: pattern for *.rb: the regex needs a named group (?P<route>...) or (?P<name>...)"]
