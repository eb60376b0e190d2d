"""Structural patterns: exact shapes, N+1, retry loops and new shapes on hand-built traces; the
simulator's injected N+1 and flaky CI retries found as its ground truth says, and nothing of
the kind in a simulation without incidents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import MS, T0, jsonl, sid, span, tid, trace_request
from telltale.analyses import patterns
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.sim import SimConfig, SimResult, simulate
from telltale.store import Store

S = 1_000_000_000


def _span(trace: str, n: int, name: str, parent: int, start_ms: float, end_ms: float,
          at: int = 0, **kw: Any) -> dict[str, Any]:
    return span(trace, sid(n), name, parent=sid(parent) if parent else "", kind=kw.pop("kind", 3),
                start=T0 + at + int(start_ms * MS), end=T0 + at + int(end_ms * MS), **kw)


def _ingest(store: Store, by_service: dict[str, list[dict[str, Any]]]) -> Store:
    ingest_bytes(store, jsonl([trace_request(spans, svc) for svc, spans in by_service.items()]),
                 source="hand.jsonl")
    return store


def _shop(trace: str, base: int, queries: int, cache_first: bool, root_ms: int,
          at: int = 0) -> dict[str, list[dict[str, Any]]]:
    """web GET / → api call → `queries` × db query, and web → cache get."""
    call, get = (20, 40) if cache_first else (0, 20)
    return {
        "web": [_span(trace, base, "GET /", 0, 0, root_ms, at, kind=2)],
        "api": [_span(trace, base + 1, "call", base, 1 + call, 19 + call, at)],
        "db": [_span(trace, base + 2 + i, "query", base + 1, 2 + call + i, 3 + call + i, at)
               for i in range(queries)],
        "cache": [_span(trace, base + 20, "get", base, 1 + get, 19 + get, at)],
    }


def _merge(*parts: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for svc, spans in part.items():
            out.setdefault(svc, []).extend(spans)
    return out


def test_shapes_are_canonical(store: Store) -> None:
    _ingest(store, _merge(_shop(tid(41), 100, 2, False, 100), _shop(tid(42), 200, 2, True, 120),
                          _shop(tid(43), 300, 3, False, 150),
                          {"web": [_span(tid(44), 400, "POST /x", 0, 0, 5, kind=2)]}))
    got = patterns.shapes(store).shapes
    assert [(s.root_operation, s.traces, s.share, s.spans, s.signature) for s in got] == [
        ("GET /", 2, 2 / 3, 5, "web: GET /(api: call(db: query×2), cache: get)"),
        ("GET /", 1, 1 / 3, 6, "web: GET /(api: call(db: query×3), cache: get)"),
        ("POST /x", 1, 1.0, 1, "web: POST /x"),
    ]
    assert (got[0].p50_ns, got[0].example_trace) == (110 * MS, tid(41))
    assert len({s.shape_id for s in got}) == 3
    only = patterns.shapes(store, Scope(operations=("POST /x",))).shapes
    assert [s.signature for s in only] == ["web: POST /x"]
    rows = patterns.shapes(store).to_rows().rows
    assert rows[0]["share_pct"] == pytest.approx(200 / 3)


def _loop(trace: str, base: int, n: int, name: str = "SELECT item", kind: int = 3
          ) -> list[dict[str, Any]]:
    return [_span(trace, base + i, name, base - 1, 10 * i, 10 * i + 10, kind=kind)
            for i in range(n)]


def test_n_plus_one(store: Store) -> None:
    _ingest(store, {
        "web": [_span(tid(51), 100, "GET /items", 0, 0, 100, kind=2),
                *_loop(tid(51), 130, 6, "render", kind=1),
                _span(tid(52), 200, "GET /items", 0, 0, 100, kind=2)],
        "db": [*_loop(tid(51), 101, 6), *_loop(tid(52), 201, 4)],
    })
    (found,) = patterns.n_plus_one(store).findings
    assert (found.parent_service, found.parent_operation, found.service, found.operation) == (
        "web", "GET /items", "db", "SELECT item")
    assert (found.occurrences, found.traces, found.max_repeats, found.median_repeats) == (
        1, 1, 6, 6.0)
    assert found.mean_total_ns == 60 * MS and found.share_of_parent == pytest.approx(0.6)
    assert found.examples == [tid(51)]
    (lower,) = patterns.n_plus_one(store, min_repeats=4).findings
    assert (lower.occurrences, lower.traces, lower.max_repeats, lower.median_repeats) == (
        2, 2, 6, 5.0)
    assert lower.examples == [tid(51), tid(52)]  # most repetitions first
    any_kind = patterns.n_plus_one(store, kinds=()).findings
    assert sorted(f.operation for f in any_kind) == ["SELECT item", "render"]
    assert patterns.n_plus_one(store, Scope(services=("web",))).findings == []


def test_retry_loops(store: Store) -> None:
    def charge(trace: str, n: int, start: int, error: bool) -> dict[str, Any]:
        return _span(trace, n, "charge", n - n % 100, start, start + 10,
                     status=2 if error else 1)

    _ingest(store, {
        "shop": [_span(tid(61), 100, "checkout", 0, 0, 100, kind=2),
                 _span(tid(62), 200, "page", 0, 0, 100, kind=2),
                 _span(tid(63), 300, "checkout", 0, 0, 100, kind=2)],
        "pay": [
            # failed, failed, passed (a loop of 3), then a failure nobody retried
            charge(tid(61), 101, 0, True), charge(tid(61), 102, 10, True),
            charge(tid(61), 103, 20, False), charge(tid(61), 104, 40, True),
            # failed twice: gave up
            charge(tid(63), 301, 0, True), charge(tid(63), 302, 20, True),
            # parallel calls sharing a name, and a failure retried only after another call
            _span(tid(62), 201, "GET", 200, 0, 10, status=2), _span(tid(62), 202, "GET", 200, 0, 10),
            _span(tid(62), 203, "fetch", 200, 20, 30, status=2),
            _span(tid(62), 204, "other", 200, 30, 40), _span(tid(62), 205, "fetch", 200, 40, 50),
        ],
    })
    (loop,) = patterns.retries(store).loops
    assert (loop.parent_operation, loop.service, loop.operation) == ("checkout", "pay", "charge")
    assert (loop.occurrences, loop.traces, loop.max_repeats, loop.mean_repeats) == (2, 2, 3, 2.5)
    assert (loop.recovered, loop.gave_up, loop.examples) == (1, 1, [tid(61), tid(63)])


def test_new_shapes(store: Store) -> None:
    def simple(trace: str, n: int, at: int, op: str = "GET /", cache: bool = False
               ) -> dict[str, list[dict[str, Any]]]:
        out = {"web": [_span(trace, n, op, 0, 0, 50, at, kind=2)],
               "db": [_span(trace, n + 1, "query", n, 5, 15, at)]}
        if cache:
            out["cache"] = [_span(trace, n + 2, "get", n, 20, 30, at)]
        return out

    _ingest(store, _merge(simple(tid(71), 100, 0), simple(tid(72), 200, 1 * S),
                          simple(tid(73), 300, 10 * S), simple(tid(74), 400, 11 * S, cache=True),
                          simple(tid(75), 500, 12 * S, op="GET /new")))
    window = Scope(T0 + 10 * S, T0 + 20 * S)
    found = patterns.new_shapes(store, window)
    assert (found.baseline_since, found.baseline_until) == (T0, T0 + 10 * S)
    assert [(s.root_operation, s.signature) for s in found.shapes] == [
        ("GET /", "web: GET /(cache: get, db: query)"), ("GET /new", "web: GET /new(db: query)")]
    explicit = patterns.new_shapes(store, window, T0 + 11 * S, T0 + 12 * S)
    # That baseline holds only the cache shape: the plain one is new against it.
    assert [s.signature for s in explicit.shapes] == ["web: GET /(db: query)",
                                                      "web: GET /new(db: query)"]
    with pytest.raises(ValueError, match="window start"):
        patterns.new_shapes(store, Scope())


def test_pattern_commands(store: Store, db_path: Path) -> None:
    _ingest(store, _merge(_shop(tid(41), 100, 6, False, 100), _shop(tid(42), 200, 2, True, 120)))
    store.close()
    runner = CliRunner()

    def run(*args: str) -> Any:
        out = runner.invoke(main, ["--db", str(db_path), "patterns", *args, "--format", "json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    assert [r["traces"] for r in run("shapes")["rows"]] == [1, 1]
    (n1,) = run("n-plus-one")["rows"]
    assert (n1["parent_operation"], n1["operation"], n1["max_repeats"]) == ("call", "query", 6)
    assert run("n-plus-one", "--min-repeats", "7")["rows"] == []
    assert run("retries")["rows"] == []
    new = run("new-shapes", "--since", str(T0), "--baseline-since", str(T0 - S))
    assert len(new["rows"]) == 2 and new["baseline_until"] == T0
    out = runner.invoke(main, ["--db", str(db_path), "patterns", "new-shapes"])
    assert out.exit_code == 1 and "window start" in out.output


# -- simulator ------------------------------------------------------------------------------


def _committed(tmp_path_factory: pytest.TempPathFactory, config: SimConfig
               ) -> tuple[Store, SimResult]:
    result = simulate(config)
    store = Store(tmp_path_factory.mktemp("patterns") / "s.duckdb")
    store.commit(result.decoded(), source="sim", fmt="simulator", content_hash="sim")
    return store, result


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, SimResult]:
    return _committed(tmp_path_factory, SimConfig(duration_s=600))


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, SimResult]:
    return _committed(tmp_path_factory, SimConfig(duration_s=240, incidents=False))


def _incident(result: SimResult, kind: str) -> dict[str, Any]:
    return next(i for i in result.truth["incidents"] if i["kind"] == kind)


def test_sim_n_plus_one_is_the_injected_loop(sim: tuple[Store, SimResult]) -> None:
    store, result = sim
    inc = _incident(result, "n_plus_one")
    measured = inc["measured"]
    (found,) = patterns.n_plus_one(store).findings
    assert (found.parent_service, found.parent_operation, found.service, found.operation) == (
        inc["service"], inc["parent_operation"], inc["service"], inc["child_operation"])
    assert (found.traces, found.occurrences) == (measured["affected_traces"], measured["parents"])
    assert (found.max_repeats, found.median_repeats) == (
        measured["max_repetitions"], measured["median_repetitions"])
    assert found.mean_repeats * found.occurrences == pytest.approx(measured["queries"])
    # Outside the incident's window there is none.
    before = Scope(result.truth["window"]["start_ns"], inc["start_ns"])
    assert patterns.n_plus_one(store, before).findings == []


def test_sim_retries_are_the_flaky_ci_job(sim: tuple[Store, SimResult]) -> None:
    store, result = sim
    inc = _incident(result, "flaky_ci_job")
    loops = patterns.retries(store).loops
    ci = [r for r in loops if r.service == inc["service"]]
    assert [r.operation for r in ci] == [inc["attributes"]["cicd.pipeline.task.name"]]
    assert ci[0].occurrences == inc["measured"]["flaky_first_failures"] > 0
    assert ci[0].recovered == inc["measured"]["flaky_retry_passes"]
    shop = {"frontend", "gateway", "catalog", "cart", "checkout", "auth", "payment",
            "recommendation", "shipping"}
    assert not [r for r in loops if r.service in shop]


def test_sim_new_shapes_are_the_loop(sim: tuple[Store, SimResult]) -> None:
    store, result = sim
    inc = _incident(result, "n_plus_one")
    found = patterns.new_shapes(store, Scope(inc["start_ns"], inc["end_ns"]))
    loop = f"{inc['service']}: {inc['child_operation']}×"
    assert found.baseline_until == inc["start_ns"]
    assert sum(s.traces for s in found.shapes if loop in s.signature) == inc["measured"][
        "affected_traces"]
    # Every new shape of a shop request holds the loop (agent runs vary from run to run).
    shop = [s for s in found.shapes if s.root_service == "frontend"]
    assert shop and all(loop in s.signature for s in shop)


def test_calm_sim_shapes(calm: tuple[Store, SimResult]) -> None:
    store, _ = calm
    shop = [s for s in patterns.shapes(store).shapes if s.root_service == "frontend"]
    per_op: dict[str, list[patterns.Shape]] = {}
    for s in shop:
        per_op.setdefault(s.root_operation, []).append(s)
    # Catalog's cache decides whether it queries the database: two shapes for the pages that
    # read products, one for every other request.
    assert {op: len(v) for op, v in per_op.items()} == {
        "GET /": 2, "GET /product/{id}": 2, "POST /cart": 1, "POST /checkout": 1,
        "POST /login": 1, "GET /search": 1}
    hit = per_op["GET /product/{id}"][0]
    assert "catalog: SELECT" not in hit.signature and hit.share == pytest.approx(0.7, abs=0.05)


def test_calm_sim_has_no_n_plus_one_and_no_new_shop_shapes(calm: tuple[Store, SimResult]) -> None:
    store, result = calm
    assert patterns.n_plus_one(store).findings == []
    window = result.truth["window"]
    half = (window["start_ns"] + window["end_ns"]) // 2
    later = Scope(half, window["end_ns"], services=("frontend",))
    assert patterns.new_shapes(store, later).shapes == []
    assert {r.service for r in patterns.retries(store).loops} <= {"orchestrator"}
