"""Latency heatmap: exact cells and bucket edges on hand-built spans, the long-format JSON as a
golden file, and the simulator's checkout regression visible after the deploy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from conftest import MS, T0, S, jsonl, pinned_settings, sid, span, tid, trace_request
from telltale.analyses.heatmap import heatmap, iso, latency_edges, pick_width, with_slowest
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.settings import ENV_DB
from telltale.sim import SimResult
from telltale.store import Store

GOLDEN = Path(__file__).parent / "golden" / "heatmap_small.json"
MINUTE = 60 * S
WINDOW = Scope(since=T0, until=T0 + 3 * MINUTE)


def _spans() -> list[dict[str, Any]]:
    """(operation, start offset, duration) → one root span each."""
    cells = [("GET /h", 5 * S, MS // 2), ("GET /h", 6 * S, MS), ("GET /h", 7 * S, 3 * MS // 2),
             ("GET /h", 8 * S, 3 * MS), ("GET /h", 70 * S, 4 * MS), ("GET /h", 71 * S, 1000 * MS),
             ("GET /g", 130 * S, 2 * MS)]
    return [span(tid(i + 1), sid(1), op, start=T0 + at, end=T0 + at + d)
            for i, (op, at, d) in enumerate(cells)]


def _ingest(db: Path) -> Store:
    store = Store(db, settings=pinned_settings(db))
    ingest_bytes(store, jsonl([trace_request(_spans(), service="api")]), source="h.jsonl")
    return store


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with _ingest(tmp_path_factory.mktemp("hand") / "h.duckdb") as store:
        yield store


def test_cells_and_edges_are_exact(hand: Store) -> None:
    heat = heatmap(hand, WINDOW, width_ns=MINUTE)
    assert heat.time_edges == [T0, T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    assert heat.latency_edges_ms == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    g, h = heat.groups
    assert (g.label, h.label) == ("api: GET /g", "api: GET /h")
    expected_h = np.zeros((3, 11), dtype=np.int64)
    expected_h[0, :3] = [1, 2, 1]  # 0.5 ms | 1 ms, 1.5 ms | 3 ms
    expected_h[1, 3] = expected_h[1, 10] = 1  # 4 ms | 1000 ms
    assert np.array_equal(h.counts, expected_h)
    assert g.counts[2, 2] == 1 and g.total == 1  # exactly 2 ms opens the [2, 4) bucket
    busiest = [(c.operation, c.time_start, c.count) for c in heat.busiest]
    assert busiest == [("GET /h", T0, 4), ("GET /h", T0 + MINUTE, 2), ("GET /g", T0 + 2 * MINUTE, 1)]


def test_slowest_moments_by_p95_and_by_ratio(hand: Store) -> None:
    heat = heatmap(hand, WINDOW, width_ns=MINUTE)
    slow = with_slowest(hand, WINDOW, heat, min_count=2).slowest
    assert [(c.operation, c.time_start) for c in slow] == [("GET /h", T0 + MINUTE), ("GET /h", T0)]
    assert slow[0].p95_ms == pytest.approx(4 + 0.95 * 996)
    assert slow[0].ratio is not None and slow[0].ratio > 1
    assert with_slowest(hand, WINDOW, heat, min_count=5).slowest == []
    by_ratio = with_slowest(hand, WINDOW, heat, rank="ratio", min_count=1).slowest
    assert by_ratio[0].time_start == T0 + MINUTE
    with pytest.raises(ValueError, match="rank"):
        with_slowest(hand, WINDOW, heat, rank="loudest")


def test_by_service_and_defaults(hand: Store) -> None:
    (svc,) = heatmap(hand, WINDOW, by="service", width_ns=MINUTE).groups
    assert (svc.label, svc.operation, svc.total) == ("api", None, 7)
    auto = heatmap(hand, Scope())
    # The data's own range (T0+5 s .. T0+130 s) at about 60 columns: 5 s buckets from T0+5 s.
    assert auto.width_ns == 5 * S and auto.time_edges[0] == T0 + 5 * S
    assert sum(g.total for g in auto.groups) == 7
    assert heatmap(hand, Scope(services=("nobody",))).groups == []
    with pytest.raises(ValueError):
        heatmap(hand, WINDOW, width_ns=0)
    with pytest.raises(ValueError, match="wider bucket"):
        heatmap(hand, WINDOW, width_ns=MS)
    fine = heatmap(hand, Scope(since=T0 + 5 * S, until=T0 + 6 * S), width_ns=100 * MS)
    assert fine.to_rows().rows[0]["time_start"] == "2025-01-01T00:00:05Z"
    assert iso(T0 + 5 * S + 100 * MS) == "2025-01-01T00:00:05.100Z"


def test_pick_width_and_latency_edges() -> None:
    assert pick_width(0, 600 * S) == 10 * S
    assert pick_width(0, 3600 * S) == 60 * S
    assert pick_width(0, S // 2) == S
    assert pick_width(0, 10 * 86400 * S) == 6 * 3600 * S  # 40 columns
    assert pick_width(0, 100 * 86400 * S) == 7 * 86400 * S
    assert latency_edges(0, 2) == [0.0, 1.0, 2.0, 4.0]
    assert latency_edges(3, 4) == [4.0, 8.0, 16.0]


def test_cli_json_is_golden_and_csv_is_long(tmp_path: Path) -> None:
    _ingest(tmp_path / "cli.duckdb").close()
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    base = ["--db", str(tmp_path / "cli.duckdb"), "heatmap", "--since", str(T0),
            "--until", str(T0 + 3 * MINUTE), "--bucket", "1m", "--min-count", "2"]
    res = runner.invoke(main, [*base, "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    if os.environ.get("TELLTALE_UPDATE_GOLDEN"):
        GOLDEN.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    assert doc == orjson.loads(GOLDEN.read_bytes())
    res = runner.invoke(main, [*base, "--format", "csv"])
    lines = res.stdout.splitlines()
    assert lines[0] == "service,operation,time_start,latency_lo_ms,latency_hi_ms,count"
    assert lines[1:3] == ["api,GET /g,2025-01-01T00:02:00Z,2.0,4.0,1",
                          "api,GET /h,2025-01-01T00:00:00Z,0.0,1.0,1"]
    assert len(lines) == 7
    res = runner.invoke(main, [*base])
    assert res.exit_code == 0, res.output
    assert "api: GET /h  (6 spans)" in res.stdout and "█" in res.stdout


# -- the simulator ----------------------------------------------------------------------------


def test_every_span_lands_in_one_cell(sim_store: Store) -> None:
    heat = heatmap(sim_store, Scope())
    total = sim_store.query("SELECT count(*) FROM otel_traces")[0][0]
    assert sum(g.total for g in heat.groups) == total
    assert len(heat.time_edges) - 1 <= 60
    top = heat.busiest[0]
    group = next(g for g in heat.groups if (g.service, g.operation) == (top.service, top.operation))
    t = heat.time_edges.index(top.time_start)
    assert top.count == int(group.counts[t].sum()) == max(int(g.counts.sum(axis=1).max())
                                                          for g in heat.groups)


def test_checkout_regression_is_visible_after_the_deploy(sim_store: Store, sim: SimResult) -> None:
    deploy = next(i for i in sim.truth["incidents"] if i["kind"] == "latency_regression")
    scope = Scope(sim.truth["window"]["start_ns"], sim.truth["window"]["end_ns"],
                  ("checkout",), ("POST /checkout",))
    heat = heatmap(sim_store, scope)
    (row,) = heat.groups
    after = np.array([t >= deploy["start_ns"] for t in heat.time_edges[:-1]])
    mids = np.arange(row.counts.shape[1])

    def mean_bucket(sel: np.ndarray[Any, Any]) -> float:
        counts = row.counts[sel].sum(axis=0)
        return float((counts * mids).sum() / counts.sum())

    # ×3 slower is log2(3) ≈ 1.6 buckets of a power-of-two scale.
    assert mean_bucket(after) - mean_bucket(~after) > 1.0
    slow = with_slowest(sim_store, scope, heat, rank="ratio", min_count=5, top=5).slowest
    assert slow and all(c.time_start >= deploy["start_ns"] for c in slow)
