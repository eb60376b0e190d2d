"""Critical path and trace statistics: exact results on hand-built traces, and the simulator's
checkout regression showing up on the critical path of slow checkouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import MS, T0, jsonl, sid, span, tid, trace_request
from telltale.analyses.critical_path import critical_path, slowest_trace, trace_stats
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.sim import SimConfig, SimResult, simulate
from telltale.store import Store

TRACE = tid(1)
SEQ = tid(2)


def _at(start_ms: float, end_ms: float) -> dict[str, int]:
    return {"start": T0 + int(start_ms * MS), "end": T0 + int(end_ms * MS)}


def _requests() -> list[dict[str, Any]]:
    """web GET / [0,100] → db query [10,40] (fails), cache get [20,60] → cache fill [30,50],
    api call [70,90] → api handler [75,95] (overflows its parent: clipped to 90)."""
    t = TRACE
    web = [span(t, sid(1), "GET /", kind=2, **_at(0, 100))]
    db = [span(t, sid(2), "query", parent=sid(1), kind=3, status=2, **_at(10, 40))]
    cache = [span(t, sid(3), "get", parent=sid(1), kind=3, **_at(20, 60)),
             span(t, sid(4), "fill", parent=sid(3), **_at(30, 50))]
    api = [span(t, sid(5), "call", parent=sid(1), kind=2, **_at(70, 90)),
           span(t, sid(6), "handler", parent=sid(5), **_at(75, 95))]
    # Back-to-back children: each starts exactly when the previous one ends.
    seq = [span(SEQ, sid(11), "batch", **_at(0, 30)),
           *(span(SEQ, sid(12 + i), f"step {i}", parent=sid(11), **_at(10 * i, 10 * i + 10))
             for i in range(3))]
    return [trace_request(web, "web"), trace_request(db, "db"), trace_request(cache, "cache"),
            trace_request(api, "api"), trace_request(seq, "jobs")]


@pytest.fixture
def hand(store: Store) -> Store:
    ingest_bytes(store, jsonl(_requests()), source="hand.jsonl")
    return store


def test_critical_path_segments_and_shares(hand: Store) -> None:
    path = critical_path(hand, TRACE.upper())
    got = [(s.service, s.operation, s.offset_ns / MS, s.duration_ns / MS, s.share)
           for s in path.segments]
    assert got == [
        ("web", "GET /", 0, 20, 20.0),  # before the cache call (the db call overlaps it)
        ("cache", "get", 20, 10, 10.0),
        ("cache", "fill", 30, 20, 20.0),
        ("cache", "get", 50, 10, 10.0),
        ("web", "GET /", 60, 10, 10.0),
        ("api", "call", 70, 5, 5.0),
        ("api", "handler", 75, 15, 15.0),  # clipped at its parent's end
        ("web", "GET /", 90, 10, 10.0),
    ]
    assert sum(s.share for s in path.segments) == pytest.approx(100.0)
    assert "query" not in {s.operation for s in path.segments}
    assert path.by_operation()[0] == ("web", "GET /", 40 * MS, 40.0)
    assert path.segments[2].span_id == sid(4)


def test_back_to_back_children_are_all_critical(hand: Store) -> None:
    path = critical_path(hand, SEQ)
    assert [(s.operation, s.duration_ns / MS) for s in path.segments] == [
        ("step 0", 10), ("step 1", 10), ("step 2", 10)]
    assert sum(s.share for s in path.segments) == pytest.approx(100.0)


def test_trace_without_root(store: Store) -> None:
    """Only orphans arrived: the path starts at the longest one, and says so."""
    t = tid(3)
    ingest_bytes(store, jsonl([trace_request([
        span(t, sid(21), "lost parent", parent=sid(20), **_at(0, 50)),
        span(t, sid(22), "child", parent=sid(21), **_at(10, 20)),
        span(t, sid(23), "other orphan", parent=sid(29), **_at(0, 10))])]), source="o.jsonl")
    path = critical_path(store, t)
    assert [(s.operation, s.duration_ns / MS) for s in path.segments] == [
        ("lost parent", 10), ("child", 10), ("lost parent", 30)]
    assert len(path.notes) == 2 and "no root span" in path.notes[0]
    with pytest.raises(ValueError, match="no root span"):
        trace_stats(store, trace_id=t)


def test_slowest_trace_and_unknown_trace(hand: Store) -> None:
    assert slowest_trace(hand, Scope()) == TRACE
    assert slowest_trace(hand, Scope(operations=("batch",))) == SEQ
    with pytest.raises(ValueError, match="no spans"):
        critical_path(hand, tid(99))


def test_trace_stats_of_one_trace(hand: Store) -> None:
    stats = trace_stats(hand, trace_id=TRACE)
    assert (stats.traces, stats.spans, stats.depth_max, stats.max_fanout) == (1, 6, 3, 3)
    assert (stats.error_spans, stats.error_traces, stats.unreachable_spans) == (1, 1, 0)
    assert stats.services == ["api", "cache", "db", "web"]
    assert stats.root_max_ns == 100 * MS and stats.root == "web: GET /"
    self_ms = {(o.service, o.operation): o.self_ns / MS for o in stats.operations}
    # web: 100 minus the union of [10,60] and [70,90]; the handler's overflow is not the call's.
    assert self_ms == {("web", "GET /"): 30, ("db", "query"): 30, ("cache", "get"): 20,
                       ("cache", "fill"): 20, ("api", "call"): 5, ("api", "handler"): 20}
    assert [o.operation for o in stats.operations][:2] == ["query", "GET /"]  # ties: by name
    assert sum(o.self_share for o in stats.operations) == pytest.approx(1.0)


def test_trace_stats_over_a_window(hand: Store) -> None:
    both = trace_stats(hand, Scope())
    assert (both.traces, both.spans, both.depth_max, both.trace_id) == (2, 10, 3, None)
    assert both.spans_p50 == 5.0
    only = trace_stats(hand, Scope(services=("jobs",)))
    assert (only.traces, only.spans, only.max_fanout) == (1, 4, 3)
    assert {o.operation: o.self_ns for o in only.operations}["batch"] == 0
    empty = trace_stats(hand, Scope(since=T0 + 1))
    assert (empty.traces, empty.spans, empty.operations) == (0, 0, [])


def test_commands(hand: Store, db_path: Path) -> None:
    hand.close()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--db", str(db_path), *args])

    out = run("critical-path", TRACE, "--format", "json")
    assert out.exit_code == 0, out.output
    segments, by_op = json.loads(out.output)
    assert [r["share_pct"] for r in segments["rows"]] == [20, 10, 20, 10, 10, 5, 15, 10]
    assert by_op["rows"][0]["operation"] == "GET /"
    out = run("critical-path", "--operation", "batch", "--format", "csv")
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[1:4] == [  # the slowest "batch" trace; then by operation
        f"jobs,step {i},{sid(12 + i)},{10.0 * i},10.0,{100 / 3}" for i in range(3)]
    out = run("trace-stats", "--format", "csv")
    assert out.exit_code == 0, out.output
    assert out.output.startswith("statistic,value\ntraces,2\nspans,10\n")
    out = run("trace-stats", TRACE)
    assert out.exit_code == 0 and "self time by operation" in out.output
    out = run("critical-path", tid(77))
    assert out.exit_code == 1 and "no spans for trace" in out.output


# -- simulator: the deploy's regression is checkout's own time on the critical path ----------


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, SimResult]:
    result = simulate(SimConfig(duration_s=300))
    store = Store(tmp_path_factory.mktemp("cp") / "s.duckdb")
    store.commit(result.decoded(), source="sim", fmt="simulator", content_hash="sim")
    return store, result


def test_deploy_regression_on_the_critical_path(sim_store: tuple[Store, SimResult]) -> None:
    store, result = sim_store
    deploy = next(i for i in result.truth["incidents"] if i["kind"] == "latency_regression")
    ids = store.query("""
        SELECT TraceId, Timestamp >= $at FROM otel_traces
        WHERE ParentSpanId = '' AND SpanName = 'POST /checkout' AND abs(Timestamp - $at) < $w
        ORDER BY TraceId""", {"at": deploy["start_ns"], "w": 60 * 10**9})
    shares: dict[bool, list[float]] = {False: [], True: []}
    for trace_id, after in ids:
        path = critical_path(store, trace_id)
        assert sum(s.share for s in path.segments) == pytest.approx(100.0)
        ends = [s.offset_ns + s.duration_ns for s in path.segments]
        assert [s.offset_ns for s in path.segments[1:]] == ends[:-1]  # contiguous
        shares[after].append(sum(p for svc, op, _, p in path.by_operation()
                                 if (svc, op) == (deploy["service"], "POST /checkout")))
    assert len(shares[False]) >= 10 and len(shares[True]) >= 10
    before = sum(shares[False]) / len(shares[False])
    after = sum(shares[True]) / len(shares[True])
    assert after > before + 15  # ×3 own time: from about a third to well over half


def test_sim_trace_stats_match_truth(sim_store: tuple[Store, SimResult]) -> None:
    store, result = sim_store
    stats = trace_stats(store, Scope())
    totals = result.truth["totals"]
    assert stats.traces == totals["traces"]
    assert stats.spans == totals["spans"] + totals["agent_spans"]
    assert stats.error_spans == totals["errors"] + result.truth["agents"]["spawn_spans"]["errors"]
    assert stats.unreachable_spans >= totals["orphans"] > 0
    assert set(stats.services) == set(result.truth["services"])
    n1 = next(i for i in result.truth["incidents"] if i["kind"] == "n_plus_one")
    # The N+1 loop (plus the step's cache call) is the widest fan-out.
    assert stats.max_fanout == n1["measured"]["max_repetitions"] + 1
