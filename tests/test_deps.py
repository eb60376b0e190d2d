"""Dependency graph: exact edges, peers and unpaired counts on hand-built traces, and the
simulator's topology found edge for edge (catalog's orphans adding no bogus caller)."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from conftest import MS, T0, S, jsonl, pinned_settings, sid, span, tid, trace_request
from telltale.analyses.deps import DependencyGraph, EdgeKind, dependencies
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.settings import ENV_DB
from telltale.sim import SimResult
from telltale.sim.templates import Node
from telltale.sim.topology import flows
from telltale.store import Store

GOLDEN = Path(__file__).parent / "golden" / "deps_operations.json"
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5


def _at(n: int, a: int, b: int) -> dict[str, int]:
    """Start / end of a span in trace n (which starts at T0 + n s), in ms."""
    return {"start": T0 + n * S + a * MS, "end": T0 + n * S + b * MS}


def _requests() -> list[dict[str, Any]]:
    frontend = [
        # 1: a call to api (which fails), api's peers, and a call to an uninstrumented CDN
        span(tid(1), sid(1), "GET /", kind=SERVER, **_at(1, 0, 100)),
        span(tid(1), sid(2), "GET", parent=sid(1), kind=CLIENT, **_at(1, 10, 60),
             attributes={"server.address": "api"}),
        span(tid(1), sid(8), "GET", parent=sid(1), kind=CLIENT, **_at(1, 60, 90),
             attributes={"server.address": "cdn.example"}),
        # 2: a producer read through a link by worker, and one nobody reads or names
        span(tid(2), sid(1), "POST /order", kind=SERVER, **_at(2, 0, 50)),
        span(tid(2), sid(2), "publish orders", parent=sid(1), kind=PRODUCER, **_at(2, 5, 10),
             attributes={"messaging.system": "kafka", "messaging.destination.name": "orders"}),
        span(tid(2), sid(3), "publish audit", parent=sid(1), kind=PRODUCER, **_at(2, 10, 12)),
        # 5: a callee that never said its kind (Zipkin-style)
        span(tid(5), sid(1), "GET /old", kind=SERVER, **_at(5, 0, 40)),
        span(tid(5), sid(2), "GET", parent=sid(1), kind=CLIENT, **_at(5, 5, 35)),
        # 6: a producer whose consumer is its child
        span(tid(6), sid(1), "POST /ship", kind=SERVER, **_at(6, 0, 30)),
        span(tid(6), sid(2), "publish shipments", parent=sid(1), kind=PRODUCER, **_at(6, 5, 8),
             attributes={"messaging.system": "kafka", "messaging.destination.name": "shipments"}),
    ]
    api = [
        span(tid(1), sid(3), "GET /items", parent=sid(2), kind=SERVER, status=2, **_at(1, 12, 58)),
        span(tid(1), sid(4), "SELECT shop.items", parent=sid(3), kind=CLIENT, **_at(1, 15, 25),
             attributes={"db.system": "postgresql", "db.namespace": "shop", "server.address": "pg"}),
        span(tid(1), sid(5), "charge", parent=sid(3), kind=CLIENT, **_at(1, 25, 45),
             attributes={"peer.service": "billing", "server.address": "billing.example"}),
        span(tid(1), sid(6), "mystery", parent=sid(3), kind=CLIENT, **_at(1, 45, 50)),
        span(tid(1), sid(7), "render", parent=sid(3), kind=INTERNAL, **_at(1, 50, 55)),
        # a call to itself over HTTP: a self-loop, not a peer named by its address
        span(tid(1), sid(11), "GET", parent=sid(3), kind=CLIENT, **_at(1, 52, 57),
             attributes={"server.address": "api"}),
        span(tid(1), sid(12), "GET /self", parent=sid(11), kind=SERVER, **_at(1, 53, 56)),
        # 4: an orphan (its caller's span was lost): it calls billing but has no caller itself
        span(tid(4), sid(1), "GET /items", parent=sid(99), kind=SERVER, **_at(4, 0, 30)),
        span(tid(4), sid(2), "charge", parent=sid(1), kind=CLIENT, **_at(4, 5, 25),
             attributes={"peer.service": "billing"}),
    ]
    worker = [
        {**span(tid(3), sid(1), "process orders", kind=CONSUMER, **_at(3, 0, 20)),
         "links": [{"traceId": tid(2), "spanId": sid(2)}]},
        span(tid(3), sid(2), "INSERT shop.orders", parent=sid(1), kind=CLIENT, **_at(3, 2, 8),
             attributes={"db.system.name": "postgresql", "db.namespace": "shop"}),
        span(tid(6), sid(3), "process shipments", parent=sid(2), kind=CONSUMER, **_at(6, 20, 29)),
    ]
    legacy = [span(tid(5), sid(3), "handle", parent=sid(2), **_at(5, 6, 34))]
    return [trace_request(frontend, service="frontend"), trace_request(api, service="api"),
            trace_request(worker, service="worker"), trace_request(legacy, service="legacy")]


def _ingest(db: Path) -> Store:
    store = Store(db, settings=pinned_settings(db))
    report = ingest_bytes(store, jsonl(_requests()), source="deps.jsonl").report
    assert report is not None and report.total_quarantined == 0
    return store


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with _ingest(tmp_path_factory.mktemp("hand") / "d.duckdb") as store:
        yield store


def _edges(graph: DependencyGraph) -> dict[tuple[str, str, str], tuple[int, int]]:
    return {(e.caller, e.callee, e.kind.value): (e.calls, e.errors) for e in graph.edges}


def test_service_edges_peers_and_unpaired_are_exact(hand: Store) -> None:
    graph = dependencies(hand, Scope())
    assert _edges(graph) == {
        ("frontend", "api", "call"): (1, 1),
        ("api", "api", "call"): (1, 0),
        ("frontend", "cdn.example", "external"): (1, 0),
        ("frontend", "legacy", "call"): (1, 0),
        ("frontend", "worker", "messaging"): (2, 0),
        ("frontend", "kafka/orders", "broker"): (1, 0),
        ("frontend", "kafka/shipments", "broker"): (1, 0),
        ("api", "postgresql/shop", "database"): (1, 0),
        ("api", "billing", "external"): (2, 0),
        ("worker", "postgresql/shop", "database"): (1, 0),
    }
    call = next(e for e in graph.edges if (e.caller, e.callee) == ("frontend", "api"))
    assert (call.p50_ms, call.p95_ms, call.error_rate) == (46.0, 46.0, 1.0)
    assert graph.unpaired == {"api": 1, "frontend": 1}
    assert graph.unpaired_client_spans == 2
    rows = graph.to_rows()
    assert rows.extra["unpaired_client_spans"] == 2
    assert rows.extra["unpaired_by_service"] == {"api": 1, "frontend": 1}
    assert "2 client/producer spans" in rows.notes[0]
    assert graph.services == ["api", "frontend", "legacy", "worker"]
    assert graph.peers == ["billing", "cdn.example", "kafka/orders", "kafka/shipments",
                           "postgresql/shop"]


def test_exporter_enum_spellings_give_the_same_graph(tmp_path: Path) -> None:
    """Older Collector exporters stored `SPAN_KIND_CLIENT` / `STATUS_CODE_ERROR`."""
    with _ingest(tmp_path / "old.duckdb") as store:
        expected = _edges(dependencies(store, Scope()))
        store.con.execute("UPDATE otel_traces SET SpanKind = 'SPAN_KIND_' || upper(SpanKind),"
                          " StatusCode = 'STATUS_CODE_' || upper(StatusCode)")
        graph = dependencies(store, Scope())
        assert _edges(graph) == expected
        assert graph.unpaired_client_spans == 2


def test_operation_level_names_the_calling_handler(hand: Store) -> None:
    graph = dependencies(hand, Scope(), level="operation")
    edges = {(e.caller, e.caller_operation, e.callee, e.callee_operation): e.calls
             for e in graph.edges}
    assert edges[("frontend", "GET /", "api", "GET /items")] == 1
    assert edges[("api", "GET /items", "postgresql/shop", "SELECT shop.items")] == 1
    assert edges[("api", "GET /items", "billing", "charge")] == 2
    assert edges[("frontend", "POST /order", "worker", "process orders")] == 1
    assert edges[("frontend", "POST /order", "kafka/orders", "publish orders")] == 1
    assert edges[("frontend", "POST /ship", "worker", "process shipments")] == 1
    assert graph.unpaired_client_spans == 2


def test_window_and_name_filters(hand: Store) -> None:
    worker = dependencies(hand, Scope(services=("worker",)))
    assert set(_edges(worker)) == {("frontend", "worker", "messaging"),
                                   ("worker", "postgresql/shop", "database")}
    billing = dependencies(hand, Scope(services=("billing",)))
    assert set(_edges(billing)) == {("api", "billing", "external")}
    # Callers are selected by their start: trace 1 only.
    first = dependencies(hand, Scope(since=T0 + S, until=T0 + 2 * S))
    assert _edges(first)[("frontend", "api", "call")] == (1, 1)
    assert ("frontend", "worker", "messaging") not in _edges(first)
    assert first.unpaired == {"api": 1}
    # A window around everything reads callees through its bounds and finds the same graph.
    assert _edges(dependencies(hand, Scope(since=T0, until=T0 + 10 * S))) == _edges(
        dependencies(hand, Scope()))
    empty = dependencies(hand, Scope(since=T0 + 100 * S))
    assert empty.edges == [] and "no calls" in empty.notes()[0]


def test_cli_operation_json_is_golden(tmp_path: Path) -> None:
    _ingest(tmp_path / "cli.duckdb").close()
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    res = runner.invoke(main, ["--db", str(tmp_path / "cli.duckdb"), "deps", "--level",
                               "operation", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    if os.environ.get("TELLTALE_UPDATE_GOLDEN"):
        GOLDEN.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    assert doc == orjson.loads(GOLDEN.read_bytes())
    res = runner.invoke(main, ["--db", str(tmp_path / "cli.duckdb"), "deps"])
    assert res.exit_code == 0 and "kafka/orders" in res.stdout and "unpaired" not in res.stdout


# Attributes a client span may name its peer by, in the order they are tried.
_PEER_KEYS = ["peer.service", "service.peer.name", "db.system.name", "db.system", "db.namespace",
              "messaging.system", "messaging.destination.name", "gen_ai.provider.name",
              "gen_ai.system", "server.address", "net.peer.name"]


def _reference_peer(attrs: dict[str, str]) -> tuple[str, str] | None:
    """The naming rule spelled out: first non-empty attribute wins; empty reads as missing."""
    def get(key: str) -> str | None:
        return attrs.get(key) or None
    name = get("peer.service") or get("service.peer.name")
    if name:
        return "external", name
    system = get("db.system.name") or get("db.system")
    if system:
        namespace = get("db.namespace")
        return "database", system + (f"/{namespace}" if namespace else "")
    system = get("messaging.system")
    if system:
        destination = get("messaging.destination.name")
        return "broker", system + (f"/{destination}" if destination else "")
    name = (get("gen_ai.provider.name") or get("gen_ai.system") or get("server.address")
            or get("net.peer.name"))
    return ("external", name) if name else None


def test_peers_follow_the_naming_rule_with_empty_values(tmp_path: Path) -> None:
    """Random attribute sets, many holding empty values (which must read as missing), named
    exactly as the rule above names them; spans naming nothing are counted as unpaired."""
    rng = random.Random(7)
    spans, expected, unpaired = [], Counter[tuple[str, str]](), 0
    for n in range(400):
        attrs = {k: rng.choice(["", "", "a", "b"]) for k in rng.sample(_PEER_KEYS, rng.randint(0, 6))}
        if rng.random() < 0.3:
            attrs["http.request.method"] = rng.choice(["", "GET"])  # not a naming attribute
        spans.append(span(tid(1000 + n), sid(1), "call", kind=CLIENT, attributes=attrs,
                          **_at(n, 0, 1 + n % 7)))
        peer = _reference_peer(attrs)
        if peer is None:
            unpaired += 1
        else:
            expected[peer] += 1
    with Store(tmp_path / "peers.duckdb", settings=pinned_settings(tmp_path / "peers.duckdb")) as store:
        report = ingest_bytes(store, jsonl([trace_request(spans, service="app")]),
                              source="peers.jsonl").report
        assert report is not None and report.total_quarantined == 0
        graph = dependencies(store, Scope())
    assert {(e.kind.value, e.callee): e.calls for e in graph.edges} == dict(expected)
    assert {e.caller for e in graph.edges} == {"app"}
    assert graph.unpaired == ({"app": unpaired} if unpaired else {})


# -- the simulator ----------------------------------------------------------------------------


def _topology() -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    """Service edges (caller, callee, kind) and database peers the simulator's flows define."""
    calls: set[tuple[str, str, str]] = set()
    databases: set[tuple[str, str]] = set()

    def walk(node: Node) -> None:
        system = node.attrs.get("db.system")
        if system:
            namespace = node.attrs.get("db.namespace")
            databases.add((node.service, f"{system}/{namespace}" if namespace else system))
        for child in node.children:
            if child.service != node.service:
                calls.add((node.service, child.service,
                           "messaging" if child.async_link else "call"))
            walk(child)

    for flow in flows():
        walk(flow.root)
    return calls, databases


def test_edges_are_the_simulated_topology(sim_store: Store, sim: SimResult) -> None:
    graph = dependencies(sim_store, Scope())
    calls, databases = _topology()
    found = {(e.caller, e.callee, e.kind.value) for e in graph.edges if e.kind.instrumented}
    assert found == calls
    # The N+1 incident adds queries no flow template issues: an edge of exactly that many calls.
    n1 = next(i for i in sim.truth["incidents"] if i["kind"] == "n_plus_one")
    databases.add((n1["service"], "postgresql/shop"))
    assert {(e.caller, e.callee) for e in graph.edges if e.kind is EdgeKind.DATABASE} == databases
    n1_edge = next(e for e in graph.edges if (e.caller, e.callee) == (n1["service"], "postgresql/shop"))
    assert n1_edge.calls == n1["measured"]["queries"]
    peers = {(e.caller, e.callee) for e in graph.edges
             if e.kind in (EdgeKind.BROKER, EdgeKind.EXTERNAL)}
    assert ("checkout", "kafka/orders") in peers
    assert {("payment", f"api.{p}.example") for p in ("acme-pay", "globex-pay", "initech-pay")} <= peers
    assert {c for s, c in peers if s == "orchestrator"} == {"anthropic", "openai"}
    assert graph.unpaired_client_spans == 0 and graph.notes() == []


def test_catalog_orphans_add_no_caller(sim_store: Store, sim: SimResult) -> None:
    graph = dependencies(sim_store, Scope())
    into_catalog = [e for e in graph.edges if e.callee == "catalog"]
    assert [e.caller for e in into_catalog] == ["gateway"]
    truth = sim.truth["services"]["catalog"]
    assert truth["orphans"] > 0
    assert into_catalog[0].calls == truth["server_spans"] - truth["orphans"]


def test_payment_errors_are_the_callee_spans_errors(sim_store: Store, sim: SimResult) -> None:
    edge = next(e for e in dependencies(sim_store, Scope()).edges
                if (e.caller, e.callee) == ("checkout", "payment"))
    t = sim.spans
    charge = t.filter(pc.and_(pc.equal(t["ServiceName"], "payment"),
                              pc.equal(t["SpanName"], "POST /charge")))
    failed = pc.sum(pc.equal(charge["StatusCode"], "Error")).as_py()
    assert (edge.calls, edge.errors) == (charge.num_rows, failed)
    assert failed > 0
