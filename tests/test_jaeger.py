"""The Jaeger query API's JSON: Jaeger's own otlp2jaeger fixture field by field, the translator's
rules on a hand-built trace, the request-parameter grammar, and the OTLP-native v3 output read
back by telltale's own ingest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from conftest import (
    MS,
    OTLP_DIR,
    T0,
    jsonl,
    kv_list,
    pinned_settings,
    requires_shared_otlp,
    rows,
    run_async,
    sid,
    span,
    tid,
)
from telltale.ingest import ingest_bytes, ingest_paths
from telltale.model import Format, Signal
from telltale.store import Store
from telltale.web.jaeger import jaeger_routes
from telltale.web.jaeger_query import (
    ParamError,
    Params,
    go_duration_ns,
    lookback_ns,
    parse_dependencies,
    parse_tags,
    parse_trace_query,
    parse_v3_query,
    trace_id,
)

FIXTURE_IN = OTLP_DIR / "jaeger_fixture_otlp2jaeger-in.otlp.json"
FIXTURE_OUT = OTLP_DIR / "jaeger_fixture_otlp2jaeger-out.jaegerjson.json"
FIXTURE_TRACE = "83a9efd15c1c98a977e0711cc93ee28b"

# Where telltale's answer may differ from Jaeger's for the fixture, and why. Each entry is a
# JSON path (as `_diff` spells it) → the reason. The fixture holds only string attributes and a
# pair of identical spans, so nothing differs there; the differences that exist in general are:
# - attribute tags are always `"type": "string"` (telltale stores attribute values as strings,
#   like the Collector's ClickHouse exporter; the original type is gone) -- tested below;
# - Jaeger applies "adjusters" to a fetched trace unless `?raw=true` (it drops one of two
#   identical spans, sorts tags, corrects clock skew); telltale serves the stored spans as they
#   are, i.e. Jaeger's raw answer, which is what the fixture is: the duplicate span stays visible
#   (and `telltale quality` counts it as a duplicate).
INTENDED_DIFFERENCES: dict[str, str] = {}


def get(app: Starlette, url: str) -> httpx.Response:
    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://jaeger.test") as client:
            return await client.get(url)
    return run_async(fetch())


def app_for(db: Path) -> Starlette:
    return Starlette(routes=jaeger_routes(pinned_settings(db)))


def _diff(got: Any, want: Any, path: str = "$") -> list[str]:
    """Every leaf where two JSON documents differ, as 'path: got != want'."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in want if k not in got]
        out += [f"{path}.{k}: unexpected" for k in got if k not in want]
        return out + [d for k in want if k in got for d in _diff(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        out = [] if len(got) == len(want) else [f"{path}: {len(got)} items != {len(want)}"]
        pairs = enumerate(zip(got, want, strict=False))  # a length mismatch is reported above
        return out + [d for i, (g, w) in pairs for d in _diff(g, w, f"{path}[{i}]")]
    # Jaeger's JSON marks types; Python would treat True == 1, so compare types too.
    return [] if (type(got), got) == (type(want), want) else [f"{path}: {got!r} != {want!r}"]


@requires_shared_otlp
def test_fixture_matches_jaegers_output_field_by_field(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        (result,) = ingest_paths(store, [str(FIXTURE_IN)])
        assert result.error is None and result.report is not None
        assert result.report.total_quarantined == 0
    want = orjson.loads(FIXTURE_OUT.read_bytes())
    res = get(app_for(db), f"/api/traces/{FIXTURE_TRACE}")
    assert res.status_code == 200
    assert res.headers["content-type"] == "application/json"
    diffs = [d for d in _diff(res.json(), want) if d.split(":")[0] not in INTENDED_DIFFERENCES]
    assert diffs == []
    # Both copies of the duplicated span are served, as Jaeger's raw conversion does.
    assert [s["spanID"] for s in res.json()["data"][0]["spans"]] == ["e127af99e3b3e074"] * 2
    # An upper-case id finds the same trace; the search finds it by service and by tag.
    assert get(app_for(db), f"/api/traces/{FIXTURE_TRACE.upper()}").json() == want
    found = get(app_for(db), "/api/traces?service=telemetrygen&tags="
                '{"peer.service":"telemetrygen-client"}').json()
    assert found["data"] == want["data"]


# -- the translator's rules on a hand-built trace ---------------------------------------------


def _hand_built() -> bytes:
    root = span(tid(1), sid(1), "GET /cart", start=T0 + 999, end=T0 + 100 * MS + 1998, kind=2,
                status=2, message="boom", attributes={"http.route": "/cart",
                                                      "http.response.status_code": 500})
    root["traceState"] = "k=v"
    root["events"] = [
        {"timeUnixNano": str(T0 + 5 * MS + 700), "name": "exception",
         "attributes": kv_list({"exception.type": "E"})},
        {"timeUnixNano": str(T0 + 6 * MS), "name": "custom", "attributes": kv_list({"event": "x"})},
    ]
    client = span(tid(1), sid(2), "SELECT", parent=sid(1), start=T0 + 10 * MS,
                  end=T0 + 20 * MS, kind=3, status=1)
    client["links"] = [
        {"traceId": tid(9), "spanId": sid(9)},
        {"traceId": tid(1), "spanId": sid(1)},  # restates the parent: retypes that reference
        {"traceId": tid(7), "spanId": sid(8),
         "attributes": kv_list({"opentracing.ref_type": "child_of"})},
    ]
    internal = span(tid(1), sid(3), "proxy", parent=sid(2), start=T0 + 11 * MS,
                    end=T0 + 12 * MS, kind=1)
    unspecified = span(tid(1), sid(4), "later", parent=sid(1), start=T0 + 30 * MS,
                       end=T0 + 31 * MS)
    shop = {"attributes": kv_list({"service.name": "shop", "host.name": "h1"})}
    return jsonl([{"resourceSpans": [
        {"resource": shop, "scopeSpans": [{"scope": {"name": "lib", "version": "2.0"},
                                           "spans": [root, client, unspecified]}]},
        {"resource": {"attributes": kv_list({"service.name": "proxy"})},
         "scopeSpans": [{"scope": {"name": "lib2"}, "spans": [internal]}]},
    ]}])


def _s(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "string", "value": value}


@pytest.fixture
def hand_db(tmp_path: Path) -> Path:
    db = tmp_path / "hand.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        result = ingest_bytes(store, _hand_built(), source="hand", fmt=Format.OTLP_JSON,
                              signal=Signal.TRACES)
        assert result.report is not None and result.report.total_quarantined == 0
    return db


def test_hand_built_trace_follows_the_translator(hand_db: Path) -> None:
    body = get(app_for(hand_db), f"/api/traces/{tid(1)}").json()
    assert (body["total"], body["limit"], body["offset"], body["errors"]) == (0, 0, 0, None)
    (trace,) = body["data"]
    assert trace["processes"] == {
        "p1": {"serviceName": "shop", "tags": [_s("host.name", "h1")]},
        "p2": {"serviceName": "proxy", "tags": []},
    }
    root, client, internal, later = trace["spans"]  # by start time
    assert root == {
        "traceID": tid(1), "spanID": sid(1), "operationName": "GET /cart", "references": [],
        "startTime": T0 // 1000,  # 999 ns after T0: truncated to the microsecond
        "duration": 100_000,  # 100 ms + 999 ns
        "tags": [_s("otel.scope.name", "lib"), _s("otel.scope.version", "2.0"),
                 _s("http.route", "/cart"),
                 _s("http.response.status_code", "500"),  # an int in OTLP; stored as a string
                 _s("span.kind", "server"), _s("otel.status_code", "ERROR"),
                 {"key": "error", "type": "bool", "value": True},
                 _s("otel.status_description", "boom"), _s("w3c.tracestate", "k=v")],
        "logs": [{"timestamp": (T0 + 5 * MS) // 1000,
                  "fields": [_s("event", "exception"), _s("exception.type", "E")]},
                 # an `event` attribute takes the place of the event name
                 {"timestamp": (T0 + 6 * MS) // 1000, "fields": [_s("event", "x")]}],
        "processID": "p1", "warnings": None,
    }
    assert client["references"] == [
        {"refType": "FOLLOWS_FROM", "traceID": tid(1), "spanID": sid(1)},
        {"refType": "FOLLOWS_FROM", "traceID": tid(9), "spanID": sid(9)},
        {"refType": "CHILD_OF", "traceID": tid(7), "spanID": sid(8)},
    ]
    assert client["tags"][2:] == [_s("span.kind", "client"), _s("otel.status_code", "OK")]
    assert (internal["processID"], internal["tags"]) == (
        "p2", [_s("otel.scope.name", "lib2"), _s("span.kind", "internal")])
    # Unspecified kind: no span.kind tag; back in the first resource: process p1 again.
    assert (later["processID"], later["tags"]) == (
        "p1", [_s("otel.scope.name", "lib"), _s("otel.scope.version", "2.0")])


def test_v3_otlp_reads_back_to_the_same_rows(hand_db: Path, tmp_path: Path) -> None:
    app = app_for(hand_db)
    res = get(app, f"/api/v3/traces/{tid(1)}")
    assert res.status_code == 200
    doc = res.json()["result"]
    assert [rs["resource"]["attributes"][0] for rs in doc["resourceSpans"]] == [
        {"key": "service.name", "value": {"stringValue": "shop"}},
        {"key": "service.name", "value": {"stringValue": "proxy"}}]
    again = tmp_path / "again.duckdb"
    with Store(again, settings=pinned_settings(again)) as store:
        ingest_bytes(store, orjson.dumps(doc), source="v3", fmt=Format.OTLP_JSON,
                     signal=Signal.TRACES)
    sql = "SELECT * EXCLUDE (BatchId) FROM otel_traces ORDER BY SpanId"
    with Store(hand_db, read_only=True) as a, Store(again, read_only=True) as b:
        assert rows(b, sql) == rows(a, sql)
    missing = get(app, f"/api/v3/traces/{tid(5)}")
    assert (missing.status_code, missing.json()) == (
        404, {"error": {"httpCode": 404, "message": "trace not found"}})
    assert get(app, "/api/v3/traces/nothex").status_code == 400


# -- request parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("500us", 500_000), ("500µs", 500_000), ("100ms", 100_000_000),
    ("1.2s", 1_200_000_000), ("1h2m", 3_720_000_000_000), (".5s", 500_000_000), ("7ns", 7),
])
def test_go_durations(text: str, ns: int) -> None:
    assert go_duration_ns(text, "minDuration") == ns


@pytest.mark.parametrize("text", ["", "1", "10 ms", "1d", "ms", "1.2.3s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ParamError, match="minDuration"):
        go_duration_ns(text, "minDuration")


def test_tags_in_every_spelling() -> None:
    assert parse_tags(["http.method:GET", "url:http://x:8080/"], []) == {
        "http.method": "GET", "url": "http://x:8080/"}
    assert parse_tags([], ['{"http.status_code":"500","error":true,"n":3}']) == {
        "http.status_code": "500", "error": "true", "n": "3"}
    assert parse_tags([], ['http.route=/a region="eu west"']) == {
        "http.route": "/a", "region": "eu west"}
    bad: tuple[list[str], list[str]]
    for bad in (["nocolon"], []), ([], ['{"a":']), ([], ["noequals"]), ([], ["[1]"]):
        with pytest.raises(ParamError):
            parse_tags(*bad)


def test_trace_query() -> None:
    now = 10_000 * 10**9
    q = parse_trace_query(Params([
        ("service", "shop"), ("operation", "GET /"), ("start", "1000"), ("end", "2000"),
        ("minDuration", "1ms"), ("maxDuration", "2s"), ("limit", "5"),
        ("tags", '{"error":"true","http.route":"/a"}')]), now)
    assert (q.service, q.operation, q.since_ns, q.until_ns) == ("shop", "GET /", 10**6, 2_001_000)
    assert (q.min_duration_ns, q.max_duration_ns, q.limit) == (10**6, 2 * 10**9, 5)
    assert (q.errors_only, q.attributes) == (True, {"http.route": "/a"})
    # lookback counts back from `end` (or now) when `start` is absent; defaults otherwise
    assert parse_trace_query(Params([("service", "s"), ("lookback", "1h")]), now).since_ns == (
        now - 3600 * 10**9)
    q = parse_trace_query(Params([("service", "s"), ("lookback", "custom"), ("limit", "0")]), now)
    assert (q.since_ns, q.until_ns, q.limit, q.errors_only) == (None, None, 20, False)
    q = parse_trace_query(Params([("traceID", "ABC"), ("traceID", tid(2)), ("traceID", "abc")]), now)
    assert q.trace_ids == ("0" * 29 + "abc", tid(2))
    for bad, msg in [([], "'service' is required"), ([("service", "s"), ("limit", "x")], "limit"),
                     ([("service", "s"), ("minDuration", "2s"), ("maxDuration", "1s")], "greater"),
                     ([("traceID", "xyz")], "traceID"), ([("service", "s"), ("lookback", "1y")],
                                                         "lookback")]:
        with pytest.raises(ParamError, match=msg):
            parse_trace_query(Params(bad), now)


def test_v3_and_dependency_parameters() -> None:
    q = parse_v3_query(Params([
        ("query.service_name", "s"), ("query.start_time_min", "2025-01-01T00:00:00.000000001Z"),
        ("query.start_time_max", "2025-01-01T01:00:00 01:00"), ("query.num_traces", "3")]))
    assert (q.service, q.since_ns, q.until_ns, q.limit) == ("s", T0 + 1, T0 + 1, 3)
    with pytest.raises(ParamError, match="required"):
        parse_v3_query(Params([("query.start_time_min", "2025-01-01T00:00:00Z")]))
    with pytest.raises(ParamError, match="time zone"):
        parse_v3_query(Params([("query.start_time_min", "2025-01-01T00:00:00"),
                               ("query.start_time_max", "2025-01-01T00:00:00Z")]))
    assert parse_dependencies(Params([("endTs", "5000"), ("lookback", "1000")]), 0) == (
        4000 * MS, 5000 * MS + 1)
    assert parse_dependencies(Params([]), 90_000 * 10**9) == (
        (90_000 - 86_400) * 10**9, 90_000 * 10**9 + 1)
    assert trace_id("AbC") == "0" * 29 + "abc"
    assert lookback_ns("2d") == 2 * 86_400 * 10**9
