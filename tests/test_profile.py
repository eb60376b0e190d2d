"""Latency profile and self time: exact on hand-built traces, and the simulator's injected
checkout regression and payment errors found where the ground truth puts them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from conftest import MS, T0, S, jsonl, pinned_settings, sid, span, tid, trace_request
from telltale.analyses.profile import OpStats, profile, span_rank
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.settings import ENV_DB
from telltale.sim import SimResult
from telltale.store import Store

SERVER, CLIENT = 2, 3


def _trace(n: int, children: list[tuple[int, int]], *, error: bool = False) -> list[dict[str, Any]]:
    """Trace n: a 0–100 ms `GET /a` root starting at T0 + n s, with children at (start, end) ms
    relative to the root's start."""
    t = T0 + n * S
    spans = [span(tid(n), sid(1), "GET /a", start=t, end=t + 100 * MS, kind=SERVER,
                  status=2 if error else None)]
    spans += [span(tid(n), sid(10 + i), "query", parent=sid(1), start=t + a * MS, end=t + b * MS,
                   kind=CLIENT) for i, (a, b) in enumerate(children)]
    return spans


# Self time of each `GET /a` root (ms) for the children below.
SELF_MS = {1: 50, 2: 80, 3: 70, 4: 40, 5: 100}


def _hand_spans() -> list[dict[str, Any]]:
    spans = (
        _trace(1, [(10, 40), (30, 60)])  # overlapping children: covered 10–60
        + _trace(2, [(80, 150)])  # sticks out past the parent's end: clipped to 80–100
        + _trace(3, [(-10, 30)])  # starts before the parent (skew): clipped to 0–30
        + _trace(4, [(10, 20), (20, 30), (50, 90), (60, 70)])  # adjacent, and one nested
        + _trace(5, [], error=True)
    )
    # A grandchild counts for its own parent only: query 10–40 → self 10 ms.
    spans.append(span(tid(1), sid(20), "fetch", parent=sid(10), start=T0 + S + 15 * MS,
                      end=T0 + S + 35 * MS))
    # `GET /b`: 100 spans of 1..100 ms, one per second from T0 + 10 s; every 20th fails.
    spans += [span(tid(100 + i), sid(1), "GET /b", start=T0 + (10 + i) * S,
                   end=T0 + (10 + i) * S + (i + 1) * MS, kind=SERVER,
                   status=2 if i % 20 == 19 else None) for i in range(100)]
    return spans


def _ingest(db: Path) -> Store:
    store = Store(db, settings=pinned_settings(db))
    ingest_bytes(store, jsonl([trace_request(_hand_spans(), service="api")]), source="hand.jsonl")
    return store


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with _ingest(tmp_path_factory.mktemp("hand") / "h.duckdb") as store:
        yield store


def _op(rows: list[OpStats], name: str) -> OpStats:
    return next(r for r in rows if r.operation == name)


def test_self_time_merges_overlaps_and_clips_children(hand: Store) -> None:
    result = profile(hand, Scope(since=T0, until=T0 + 10 * S), self_time=True)
    root = _op(result.rows, "GET /a")
    values = sorted(SELF_MS.values())
    assert root.count == 5
    assert root.self_mean_ms == pytest.approx(sum(values) / len(values))
    assert root.self_p50_ms == pytest.approx(70.0)
    assert root.p50_ms == pytest.approx(100.0)
    # query spans: self = own duration except trace 1's first, whose grandchild takes 20 ms.
    query = _op(result.rows, "query")
    durations = [30, 30, 70, 40, 10, 10, 40, 10]
    own = [10, *durations[1:]]
    assert query.count == len(durations)
    assert query.self_mean_ms == pytest.approx(sum(own) / len(own))
    assert _op(result.rows, "fetch").self_mean_ms == pytest.approx(20.0)


def test_percentiles_errors_and_throughput_are_exact(hand: Store) -> None:
    scope = Scope(since=T0 + 10 * S, until=T0 + 110 * S)
    b = _op(profile(hand, scope).rows, "GET /b")
    assert (b.count, b.errors, b.error_rate) == (100, 5, 0.05)
    assert b.per_s == pytest.approx(1.0)
    # quantile_cont over 1..100 ms: linear interpolation between order statistics.
    assert (b.p50_ms, b.p90_ms, b.p95_ms, b.p99_ms, b.max_ms) == pytest.approx(
        (50.5, 90.1, 95.05, 99.01, 100.0))
    assert b.self_mean_ms is None  # not asked for


def test_exporter_status_spelling_counts_as_error(tmp_path: Path) -> None:
    with _ingest(tmp_path / "old.duckdb") as store:
        store.con.execute("UPDATE otel_traces SET StatusCode = 'STATUS_CODE_' || upper(StatusCode)")
        (svc,) = profile(store, Scope(), by="service").rows
        assert svc.errors == 6


def test_by_service_and_sort_orders(hand: Store) -> None:
    (svc,) = profile(hand, Scope(), by="service").rows
    assert (svc.service, svc.operation, svc.count, svc.errors) == ("api", None, 114, 6)
    by_count = [r.operation for r in profile(hand, Scope(), sort="count").rows]
    assert by_count == ["GET /b", "query", "GET /a", "fetch"]
    by_errors = [r.operation for r in profile(hand, Scope(), sort="errors").rows]
    assert by_errors[:2] == ["GET /b", "GET /a"]
    by_p95 = [r.operation for r in profile(hand, Scope()).rows]
    assert by_p95[0] == "GET /a"
    with pytest.raises(ValueError, match="self time"):
        profile(hand, Scope(), sort="self")


def test_span_rank_among_its_operation(hand: Store) -> None:
    rank = span_rank(hand, tid(195).upper(), sid(1))  # the 96 ms `GET /b` span
    assert (rank.service, rank.operation, rank.duration_ms) == ("api", "GET /b", 96.0)
    assert rank.population == 100
    assert rank.percent_rank == pytest.approx(95 / 99)
    assert "slow for its kind" in rank.verdict
    # Outside the window the span still counts itself among the spans it is compared with.
    early = span_rank(hand, tid(195), sid(1), Scope(since=T0 + 10 * S, until=T0 + 60 * S))
    assert (early.population, early.percent_rank) == (51, 1.0)
    with pytest.raises(ValueError, match="no span"):
        span_rank(hand, tid(999), sid(1))


def test_cli_profile_and_span_rank(tmp_path: Path) -> None:
    _ingest(tmp_path / "cli.duckdb").close()
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    db = str(tmp_path / "cli.duckdb")
    res = runner.invoke(main, ["--db", db, "profile", "--format", "json", "--self-time",
                               "--operation", "GET /a"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    assert [r["operation"] for r in doc["rows"]] == ["GET /a"]
    assert doc["rows"][0]["self_mean_ms"] == pytest.approx(68.0)
    res = runner.invoke(main, ["--db", db, "profile", "--span", f"{tid(195)}:{sid(1)}"])
    assert res.exit_code == 0, res.output
    assert "GET /b" in res.stdout and "96.000" in res.stdout
    res = runner.invoke(main, ["--db", db, "profile", "--span", "nocolon"])
    assert res.exit_code != 0 and "TRACE_ID:SPAN_ID" in res.output


# -- the simulator ----------------------------------------------------------------------------


def _incident(sim: SimResult, kind: str) -> dict[str, Any]:
    return next(i for i in sim.truth["incidents"] if i["kind"] == kind)


def test_checkout_regression_shows_in_its_p95_and_self_time(sim_store: Store,
                                                             sim: SimResult) -> None:
    deploy = _incident(sim, "latency_regression")
    start, end = sim.truth["window"]["start_ns"], sim.truth["window"]["end_ns"]
    before = profile(sim_store, Scope(start, deploy["start_ns"], ("checkout", "payment")),
                     self_time=True)
    after = profile(sim_store, Scope(deploy["start_ns"], end, ("checkout", "payment")),
                    self_time=True)
    b, a = _op(before.rows, "POST /checkout"), _op(after.rows, "POST /checkout")
    assert a.p95_ms > 2 * b.p95_ms
    assert a.self_p50_ms is not None and b.self_p50_ms is not None
    assert a.self_p50_ms > 2.5 * b.self_p50_ms
    # The callee did not change: self time puts the regression in checkout's own code.
    pb, pa = _op(before.rows, "POST /charge"), _op(after.rows, "POST /charge")
    assert pa.self_p50_ms is not None and pb.self_p50_ms is not None
    assert pa.self_p50_ms < 1.3 * pb.self_p50_ms
    # The slowest checkout after the deploy ranks at the top of its kind.
    assert after.rows[0].service == "checkout"


def test_payment_errors_match_truth(sim_store: Store, sim: SimResult) -> None:
    rows = {r.service: r for r in profile(sim_store, Scope(), by="service").rows}
    truth = sim.truth["services"]["payment"]
    assert (rows["payment"].count, rows["payment"].errors) == (truth["spans"], truth["errors"])
    burst = _incident(sim, "error_burst")
    inside = profile(sim_store, Scope(burst["start_ns"], burst["end_ns"], ("payment",)))
    outside = profile(sim_store, Scope(burst["end_ns"], None, ("payment",)))
    rate_in = _op(inside.rows, "POST").error_rate
    assert rate_in > 10 * max(_op(outside.rows, "POST").error_rate, 0.001)
    # Exactly the provider calls that failed inside the window, counted from the generated spans.
    t = sim.spans
    sel = pc.and_(pc.and_(pc.equal(t["ServiceName"], "payment"), pc.equal(t["SpanName"], "POST")),
                  pc.and_(pc.greater_equal(t["StartNs"], burst["start_ns"]),
                          pc.less(t["StartNs"], burst["end_ns"])))
    calls = t.filter(sel)
    failed = pc.sum(pc.equal(calls["StatusCode"], "Error")).as_py()
    assert (_op(inside.rows, "POST").count, _op(inside.rows, "POST").errors) == (
        calls.num_rows, failed)


def test_rows_render_with_self_columns(sim_store: Store) -> None:
    rows = profile(sim_store, Scope(services=("cart",)), self_time=True).to_rows()
    assert rows.columns[-3:] == ["self_mean_ms", "self_p50_ms", "self_p95_ms"]
    assert all(r["service"] == "cart" for r in rows.rows)
    empty = profile(sim_store, Scope(services=("nobody",))).to_rows()
    assert empty.rows == [] and empty.notes == ["no spans in scope"]



@pytest.mark.parametrize(("rank", "verdict"), [
    (0.995, "very slow for its kind (≥ p99)"), (0.96, "slow for its kind (≥ p95)"),
    (0.92, "slower than usual (≥ p90)"), (0.637, "typical (between p10 and p90)"),
    (0.5, "typical (between p10 and p90)"), (0.05, "faster than usual (≤ p10)")])
def test_span_rank_verdict_calls_the_middle_typical(rank: float, verdict: str) -> None:
    from telltale.analyses.profile import SpanRank

    span = SpanRank("t", "s", "svc", "op", 41.0, rank, 9265, 37.0, 55.0, 65.0, 80.0)
    assert span.verdict == verdict
