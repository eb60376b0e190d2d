"""Trace diff: exact node alignment, structure changes and latency deltas on hand-built traces
and groups, and the simulator's deploy and N+1 found as the largest contributions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import MS, T0, jsonl, sid, span, tid, trace_request
from telltale.analyses.scope import Scope
from telltale.analyses.trace_diff import Change, TraceDiff, TraceGroup, trace_diff
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.render.rows import to_json
from telltale.sim import SimConfig, SimResult, simulate
from telltale.store import Store

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TELLTALE_UPDATE_GOLDEN") == "1"
S = 1_000_000_000
A, B = tid(21), tid(22)


def _trace(trace: str, n: int, at: int, root_ms: int, queries: list[tuple[int, int]],
           others: list[tuple[str, str, int, int]]) -> list[dict[str, Any]]:
    """web `GET /` [0, root_ms] with db `query` children and (service, name, start, end) others,
    starting `at` ns after T0; span ids from `n`."""
    def t(ms: int) -> int:
        return T0 + at + ms * MS

    root = sid(n)
    web = [span(trace, root, "GET /", kind=2, start=t(0), end=t(root_ms))]
    db = [span(trace, sid(n + 1 + i), "query", parent=root, kind=3, start=t(s), end=t(e))
          for i, (s, e) in enumerate(queries)]
    out = [trace_request(web, "web"), trace_request(db, "db")]
    for i, (service, name, s, e) in enumerate(others):
        out.append(trace_request([span(trace, sid(n + 50 + i), name, parent=root, kind=3,
                                       start=t(s), end=t(e))], service))
    return out


@pytest.fixture
def hand(store: Store) -> Store:
    requests = [
        # Two single traces: B repeats the query four times, calls api, no longer the cache.
        *_trace(A, 100, 0, 100, [(10, 30), (30, 50)], [("cache", "get", 60, 70)]),
        *_trace(B, 200, 0, 150, [(10, 30), (30, 50), (50, 70), (70, 90)],
                [("api", "call", 100, 140)]),
        # Groups of root "GET /": A at 100 s (2 traces), B at 110 s (3 traces).
        *_trace(tid(31), 300, 100 * S, 100, [(10, 30)], []),
        *_trace(tid(32), 400, 101 * S, 120, [(10, 50)], []),
        *_trace(tid(33), 500, 110 * S, 200, [(10, 40), (40, 70)], []),
        *_trace(tid(34), 600, 111 * S, 220, [(10, 40), (40, 70)], []),
        *_trace(tid(35), 700, 112 * S, 240, [(10, 40), (40, 70)], [("cache", "get", 80, 100)]),
    ]
    ingest_bytes(store, jsonl(requests), source="hand.jsonl")
    return store


def _structure(d: TraceDiff) -> list[tuple[str, str, float, float, float]]:
    return [(s.change.value, f"{s.service}: {s.operation}", s.a_per_trace, s.b_per_trace,
             round(s.contribution_ns / MS, 3)) for s in d.structure]


def test_two_traces(hand: Store) -> None:
    d = trace_diff(hand, TraceGroup(trace_id=A), TraceGroup(trace_id=B.upper()))
    assert (d.a_traces, d.b_traces) == (1, 1)
    assert _structure(d) == [("added", "api: call", 0, 1, 40.0),
                             ("more", "db: query", 2, 4, 40.0),
                             ("removed", "cache: get", 1, 0, -10.0)]
    nodes = {n.path: n for n in d.nodes}
    root = nodes["web: GET /"]
    assert (root.a_mean_ns, root.b_mean_ns, root.delta_ns, root.ratio) == (
        100 * MS, 150 * MS, 50 * MS, 1.5)
    assert (root.a_self_ns, root.b_self_ns, root.contribution_ns) == (50 * MS, 30 * MS, -20 * MS)
    assert nodes["web: GET / > db: query #2"].change is Change.SAME
    assert nodes["web: GET / > db: query #2"].delta_ns == 0
    assert nodes["web: GET / > db: query #4"].change is Change.ADDED
    assert nodes["web: GET / > cache: get"].change is Change.REMOVED
    # Contributions add up to the root's change; the largest comes first.
    assert sum(n.contribution_ns for n in d.nodes) == pytest.approx(50 * MS)
    assert [n.path for n in d.nodes][:2] == ["web: GET / > api: call", "web: GET /"]


def test_identical_traces_have_no_changes(hand: Store) -> None:
    d = trace_diff(hand, TraceGroup(trace_id=A), TraceGroup(trace_id=A))
    assert d.structure == []
    assert all(n.change is Change.SAME and n.delta_ns == 0 for n in d.nodes)


def test_two_groups_of_a_root_operation(hand: Store) -> None:
    a = TraceGroup(root_op="GET /", since=T0 + 100 * S, until=T0 + 105 * S)
    b = TraceGroup(root_op="GET /", since=T0 + 105 * S, until=T0 + 120 * S)
    d = trace_diff(hand, a, b)
    assert (d.a_traces, d.b_traces) == (2, 3)
    nodes = {n.path: n for n in d.nodes}
    root = nodes["web: GET /"]
    assert (root.a_mean_ns, root.b_mean_ns, root.a_p50_ns, root.b_p50_ns) == (
        110 * MS, 220 * MS, 110 * MS, 220 * MS)
    assert root.ratio == 2.0
    first = nodes["web: GET / > db: query"]
    assert (first.a_mean_ns, first.b_mean_ns, first.delta_ns) == (30 * MS, 30 * MS, 0)
    cache = nodes["web: GET / > cache: get"]
    assert (cache.a_traces, cache.b_traces, cache.change) == (0, 1, Change.ADDED)
    assert [(n.path, round(n.contribution_ns / MS, 3)) for n in d.nodes] == [
        ("web: GET /", 73.333), ("web: GET / > db: query #2", 30.0),
        ("web: GET / > cache: get", 6.667), ("web: GET / > db: query", 0.0)]
    assert _structure(d) == [("more", "db: query", 1.0, 2.0, 30.0),
                             ("added", "cache: get", 0.0, pytest.approx(1 / 3), 6.667)]
    # Filters keep only the named nodes.
    only = trace_diff(hand, a, b, Scope(services=("cache",)))
    assert [n.path for n in only.nodes] == ["web: GET / > cache: get"]


def test_empty_group_is_an_error(hand: Store) -> None:
    with pytest.raises(ValueError, match="no root span"):
        trace_diff(hand, TraceGroup(trace_id=A), TraceGroup(root_op="nope", since=0, until=1))


def test_golden_json(hand: Store) -> None:
    d = trace_diff(hand, TraceGroup(trace_id=A), TraceGroup(trace_id=B))
    text = to_json(d.to_rows()) + "\n"
    path = GOLDEN / "trace_diff.json"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), "regenerate with TELLTALE_UPDATE_GOLDEN=1 and review the diff"


def test_diff_command(hand: Store, db_path: Path) -> None:
    hand.close()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--db", str(db_path), "diff", *args, "--format", "json"])

    out = run(A, B)
    assert out.exit_code == 0, out.output
    structure, nodes = json.loads(out.output)
    assert [r["change"] for r in structure["rows"]] == ["added", "more", "removed"]
    assert nodes["b_traces"] == 1
    # Groups: B from --since/--until, A the same length before it.
    out = run("--root-op", "GET /", "--since", str(T0 + 105 * S), "--until", str(T0 + 120 * S))
    assert out.exit_code == 0, out.output
    structure, nodes = json.loads(out.output)
    assert (nodes["a_traces"], nodes["b_traces"]) == (2, 3)
    out = run("--root-op", "GET /", "--a-since", str(T0 + 100 * S), "--a-until",
              str(T0 + 105 * S), "--b-since", str(T0 + 105 * S), "--b-until", str(T0 + 120 * S),
              "--service", "cache")
    assert [r["path"] for r in json.loads(out.output)[1]["rows"]] == ["web: GET / > cache: get"]
    assert run(A).exit_code == 2  # one trace id: a usage error
    out = run(A, tid(99))
    assert out.exit_code == 1 and "no root span" in out.output


# -- simulator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, SimResult]:
    result = simulate(SimConfig(duration_s=600))
    store = Store(tmp_path_factory.mktemp("diff") / "s.duckdb")
    store.commit(result.decoded(), source="sim", fmt="simulator", content_hash="sim")
    return store, result


def _incident(result: SimResult, kind: str) -> dict[str, Any]:
    return next(i for i in result.truth["incidents"] if i["kind"] == kind)


def test_deploy_is_the_largest_contribution(sim: tuple[Store, SimResult]) -> None:
    store, result = sim
    inc = _incident(result, "latency_regression")
    window = result.truth["window"]
    d = trace_diff(store, TraceGroup(root_op="POST /checkout", since=window["start_ns"],
                                     until=inc["start_ns"]),
                   TraceGroup(root_op="POST /checkout", since=inc["start_ns"],
                              until=window["end_ns"]))
    top = d.nodes[0]
    assert (top.service, top.operation) == (inc["service"], "POST /checkout")
    assert top.ratio is not None and 2.5 < top.ratio < 3.5
    measured = inc["measured"]
    assert top.a_mean_ns == pytest.approx(measured["mean_ns_before"], rel=0.02)
    assert top.b_mean_ns == pytest.approx(measured["mean_ns_after"], rel=0.02)
    assert d.structure == []  # a slower version, not a different call graph


def test_n_plus_one_is_an_added_repeated_query(sim: tuple[Store, SimResult]) -> None:
    store, result = sim
    inc = _incident(result, "n_plus_one")
    # Before the orphan incident, which takes catalog out of some traces' structure.
    clean = result.truth["window"]["start_ns"], _incident(result, "orphan_spans")["start_ns"]
    d = trace_diff(store, TraceGroup(root_op="GET /", since=clean[0], until=clean[1]),
                   TraceGroup(root_op="GET /", since=inc["start_ns"], until=inc["end_ns"]))
    top = d.structure[0]
    assert (top.change, top.service, top.operation) == (
        Change.ADDED, inc["service"], inc["child_operation"])
    assert top.parent_path.endswith(f"{inc['service']}: {inc['parent_operation']}")
    # share × mean repetitions per trace: 0.5 × 11.5 ≈ 5.75
    assert 4.5 < top.b_per_trace < 7.0
    assert top.contribution_ns > 0
    assert [s for s in d.structure if s.change is not Change.ADDED] == []
