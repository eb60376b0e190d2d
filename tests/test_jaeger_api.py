"""The Jaeger query API over the simulator's store, through a real HTTP server (uvicorn on a free
port) and an HTTP client making the Jaeger UI's / Grafana's requests. Search results are checked
against plain SQL over the same store: the set of traces one span of which matches every filter.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from telltale.analyses.trace_detail import load_trace, load_traces
from telltale.settings import Settings
from telltale.sim import SimResult
from telltale.sim.templates import Node
from telltale.sim.topology import flows
from telltale.store import Store
from telltale.web.jaeger import jaeger_routes

S = 1_000_000_000


@pytest.fixture(scope="module")
def window(sim: SimResult) -> tuple[int, int]:
    start = sim.config.start_ns
    return start, start + int(sim.config.duration_s * S)


@pytest.fixture(scope="module")
def base_url(sim_db: Path, window: tuple[int, int]) -> Iterator[str]:
    settings = Settings(db_path=sim_db, clock=lambda: window[1])  # "now": the end of the run
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=jaeger_routes(settings)),
                                           log_level="warning", lifespan="off", ws="none"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def ok(client: httpx.Client, url: str, **params: Any) -> Any:
    res = client.get(url, params=params or None)  # None keeps a query already in `url`
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/json"
    return res.json()


def col(store: Store, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    return [r[0] for r in store.con.execute(sql, params or {}).fetchall()]


def _span_services(trace: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(trace["processes"][s["processID"]]["serviceName"], s) for s in trace["spans"]]


def test_ui_request_sequence(client: httpx.Client, sim_store: Store,
                             window: tuple[int, int]) -> None:
    """What the Jaeger UI (and Grafana's Jaeger data source) asks, in order."""
    services = ok(client, "/api/services")
    want = col(sim_store, "SELECT DISTINCT ServiceName FROM otel_traces ORDER BY 1")
    assert services["data"] == want and services["total"] == len(want)
    assert {"frontend", "checkout", "payment"} <= set(want)

    ops = ok(client, "/api/services/checkout/operations")["data"]
    assert ops == col(sim_store, "SELECT DISTINCT SpanName FROM otel_traces "
                                 "WHERE ServiceName = 'checkout' ORDER BY 1")
    server_ops = ok(client, "/api/operations", service="checkout", spanKind="server")["data"]
    assert server_ops == [{"name": n, "spanKind": "server"} for n in col(
        sim_store, "SELECT DISTINCT SpanName FROM otel_traces WHERE ServiceName = 'checkout' "
                   "AND SpanKind = 'Server' ORDER BY 1")]
    assert server_ops

    op = server_ops[0]["name"]
    end_us = window[1] // 1000
    found = ok(client, "/api/traces", service="checkout", operation=op, limit=20,
               lookback="1h", start=end_us - 3600 * 10**6, end=end_us, maxDuration="",
               minDuration="")
    traces = found["data"]
    assert 0 < len(traces) <= 20 and (found["total"], found["errors"]) == (0, None)
    for trace in traces:
        assert any(svc == "checkout" and s["operationName"] == op
                   for svc, s in _span_services(trace))
    starts = [min(s["startTime"] for s in t["spans"]) for t in traces]
    assert starts == sorted(starts, reverse=True)  # newest first

    one = ok(client, f"/api/traces/{traces[0]['traceID']}")
    assert one["data"] == [traces[0]]


def test_fetched_trace_is_the_stored_trace(client: httpx.Client, sim_store: Store) -> None:
    tid = col(sim_store, "SELECT TraceId FROM otel_traces WHERE ServiceName = 'payment' "
                         "AND StatusCode = 'Error' ORDER BY TraceId LIMIT 1")[0]
    (trace,) = ok(client, f"/api/traces/{tid}")["data"]
    stored = sim_store.con.execute(
        "SELECT SpanId, ParentSpanId, ServiceName, SpanName, Timestamp // 1000, Duration // 1000,"
        " StatusCode FROM otel_traces WHERE TraceId = $t ORDER BY Timestamp, SpanId",
        {"t": tid}).fetchall()
    got = []
    for svc, s in _span_services(trace):
        parents = [r["spanID"] for r in s["references"] if r["refType"] == "CHILD_OF"]
        error = {"key": "error", "type": "bool", "value": True} in s["tags"]
        got.append((s["spanID"], parents[0] if parents else "", svc, s["operationName"],
                    s["startTime"], s["duration"], "Error" if error else "-"))
    assert got == [(*r[:6], "Error" if r[6] == "Error" else "-") for r in stored]
    assert len(trace["processes"]) >= len({r[2] for r in stored})


def _oracle(store: Store, where: str, params: dict[str, Any]) -> set[str]:
    # `where` is the tests' own constant text; values are bound
    return set(col(store, f"SELECT DISTINCT TraceId FROM otel_traces WHERE {where}",  # noqa: S608
                   params))


@pytest.mark.parametrize("case", ["window", "durations", "tag", "error", "operation"])
def test_search_matches_sql(case: str, client: httpx.Client, sim_store: Store,
                            window: tuple[int, int]) -> None:
    service = "frontend" if case == "error" else "payment"
    # A minute of the run; the whole run for errors (rarer)
    start, end = (window[0], window[1]) if case == "error" else (
        window[0] + 120 * S, window[0] + 180 * S)
    params: dict[str, Any] = {"service": service, "start": start // 1000, "end": end // 1000,
                              "limit": 1500}
    where = ["ServiceName = $svc", "Timestamp >= $lo", "Timestamp < $hi"]
    args: dict[str, Any] = {"svc": service, "lo": start, "hi": end + 1000}
    if case == "durations":
        params |= {"minDuration": "20ms", "maxDuration": "0.1s"}
        where.append("Duration BETWEEN 20000000 AND 100000000")
    elif case == "tag":
        # The rarest attribute value that several spans of the window share
        key, value = sim_store.con.execute(
            "SELECT k, v FROM (SELECT unnest(map_keys(SpanAttributes)) AS k, "
            "unnest(map_values(SpanAttributes)) AS v FROM otel_traces WHERE ServiceName = $svc "
            "AND Timestamp >= $lo AND Timestamp < $hi) GROUP BY ALL HAVING count(*) > 1 "
            "ORDER BY count(*), k, v LIMIT 1", args).fetchone() or ("", "")
        params["tags"] = f'{{"{key}": "{value}"}}'
        where.append("(SpanAttributes[$k] = $v OR ResourceAttributes[$k] = $v)")
        args |= {"k": key, "v": value}
    elif case == "error":
        params["tags"] = "error=true"
        where.append("StatusCode = 'Error'")
    elif case == "operation":
        params["operation"] = col(sim_store, "SELECT SpanName FROM otel_traces WHERE "
                                             "ServiceName = 'payment' ORDER BY 1 LIMIT 1")[0]
        where.append("SpanName = $op")
        args["op"] = params["operation"]
    want = _oracle(sim_store, " AND ".join(where), args)
    got = [t["traceID"] for t in ok(client, "/api/traces", **params)["data"]]
    assert want and len(want) < 1500
    assert len(got) == len(set(got)) and set(got) == want


def test_limit_keeps_the_newest(client: httpx.Client, sim_store: Store) -> None:
    got = [t["traceID"] for t in ok(client, "/api/traces", service="shipping", limit=3)["data"]]
    newest = col(sim_store, "WITH t AS (SELECT TraceId, min(Timestamp) AS s FROM otel_traces "
                            "GROUP BY 1 HAVING bool_or(ServiceName = 'shipping')) "
                            "SELECT TraceId FROM t ORDER BY s DESC, TraceId LIMIT 3")
    assert got == newest


def test_errors_have_jaegers_shape(client: httpx.Client, sim_store: Store) -> None:
    unknown = "f" * 32
    res = client.get(f"/api/traces/{unknown}")
    assert (res.status_code, res.json()) == (404, {
        "data": None, "total": 0, "limit": 0, "offset": 0,
        "errors": [{"code": 404, "msg": "trace not found"}]})
    bad = client.get("/api/traces/not-a-trace-id")
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == 400
    assert client.get("/api/traces").json()["errors"] == [
        {"code": 400, "msg": "parameter 'service' is required"}]
    assert client.get("/api/operations").status_code == 400
    known = col(sim_store, "SELECT min(TraceId) FROM otel_traces")[0]
    both = ok(client, f"/api/traces?traceID={known}&traceID={unknown}")
    assert [t["traceID"] for t in both["data"]] == [known]
    assert both["errors"] == [{"msg": "trace not found", "traceID": unknown}]


def _topology_calls() -> set[tuple[str, str]]:
    calls: set[tuple[str, str]] = set()

    def walk(node: Node) -> None:
        for child in node.children:
            if child.service != node.service:
                calls.add((node.service, child.service))
            walk(child)

    for flow in flows():
        walk(flow.root)
    return calls


def test_dependencies(client: httpx.Client, sim_store: Store, window: tuple[int, int]) -> None:
    services = set(col(sim_store, "SELECT DISTINCT ServiceName FROM otel_traces"))
    span_ms = (window[1] - window[0]) // 10**6 + 60_000
    links = ok(client, "/api/dependencies", endTs=window[1] // 10**6 + 60_000,
               lookback=span_ms)["data"]
    pairs = {(d["parent"], d["child"]): d["callCount"] for d in links}
    assert {p for p in pairs if p[1] in services} == _topology_calls()
    assert any(child.startswith("postgresql") for _, child in pairs)  # uninstrumented peers
    calls = col(sim_store, "SELECT count(*) FROM otel_traces c JOIN otel_traces p "
                           "ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId "
                           "WHERE p.ServiceName = 'frontend' AND c.ServiceName = 'gateway'")[0]
    assert pairs[("frontend", "gateway")] == calls > 0
    only = ok(client, "/api/dependencies", endTs=window[1] // 10**6 + 60_000, lookback=span_ms,
              service="payment")["data"]
    assert only and all("payment" in (d["parent"], d["child"]) for d in only)
    assert all(pairs[(d["parent"], d["child"])] == d["callCount"] for d in only)
    # Default window: the 24 hours before "now" (here the end of the run).
    day = ok(client, "/api/dependencies", endTs=window[1] // 10**6, lookback=86_400_000)["data"]
    assert ok(client, "/api/dependencies")["data"] == day and day
    assert ok(client, "/api/dependencies", endTs=window[0] // 10**6 - 1)["data"] == []


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // S, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % S:09d}Z"


def test_v3_api(client: httpx.Client, window: tuple[int, int]) -> None:
    assert ok(client, "/api/v3/services")["services"] == ok(client, "/api/services")["data"]
    ops = ok(client, "/api/v3/operations", service="checkout", span_kind="server")["operations"]
    assert ops == ok(client, "/api/operations", service="checkout", spanKind="server")["data"]
    start, end = window[0] + 300 * S, window[0] + 330 * S
    found = ok(client, "/api/v3/traces", **{
        "query.service_name": "checkout", "query.start_time_min": _rfc3339(start),
        "query.start_time_max": _rfc3339(end), "query.num_traces": 5})["result"]
    ids = {s["traceId"] for rs in found["resourceSpans"] for ss in rs["scopeSpans"]
           for s in ss["spans"]}
    v1 = ok(client, "/api/traces", service="checkout", start=start // 1000, end=end // 1000,
            limit=5)["data"]
    assert ids == {t["traceID"] for t in v1} and len(ids) == 5
    one = ok(client, f"/api/v3/traces/{v1[0]['traceID']}")["result"]
    spans = [s for rs in one["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert sorted(s["spanId"] for s in spans) == sorted(s["spanID"] for s in v1[0]["spans"])
    assert all(isinstance(s["kind"], int) and s["startTimeUnixNano"].isdigit() for s in spans)
    res = client.get("/api/v3/traces", params={"query.service_name": "checkout"})
    assert res.status_code == 400 and res.json()["error"]["httpCode"] == 400


def test_load_traces_is_load_trace_for_each(sim_store: Store) -> None:
    ids = col(sim_store, "SELECT DISTINCT TraceId FROM otel_traces ORDER BY TraceId LIMIT 25")
    unknown = "0" * 32
    many = load_traces(sim_store, [*ids, unknown, ids[0].upper()])
    assert sorted(many) == ids
    assert all(many[t] == load_trace(sim_store, t) for t in ids)
    assert load_traces(sim_store, []) == {}
