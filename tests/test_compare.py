"""Compare (BubbleUp): exact proportions on hand-built spans, and the simulator's error burst and
deploy found as the attribute values that set the selected spans apart."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from conftest import MS, T0, jsonl, sid, span, tid, trace_request
from telltale.analyses.compare import Comparison, Selection, compare
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.render.rows import to_json
from telltale.settings import ENV_DB
from telltale.sim import SimResult
from telltale.store import Store

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TELLTALE_UPDATE_GOLDEN") == "1"


def _top(result: Comparison, n: int = 1) -> list[tuple[str, str]]:
    return [(v.key, v.value) for v in result.values[:n]]


# -- hand-built spans ------------------------------------------------------------------------


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Store]:
    """10 `GET /a` server spans: the 4 failures in region eu, the 6 others in us; half of each
    side is tier gold; every span has its own request.id; failures carry error.type.
    Trace 20: `GET /b` fails because its child `SELECT` failed (db.system postgres)."""
    spans = []
    for i in range(10):
        failed = i < 4
        attrs = {"region": "eu" if failed else "us", "request.id": f"r{i}",
                 "tier": "gold" if i % 2 else "silver", **({"error.type": "Timeout"} if failed else {})}
        spans.append(span(tid(i + 1), sid(i + 1), "GET /a", kind=2, start=T0 + i * MS,
                          end=T0 + i * MS + (900 if failed else 100) * MS,
                          status=2 if failed else 1, attributes=attrs))
    spans.append(span(tid(20), sid(20), "GET /b", kind=2, start=T0, end=T0 + 50 * MS, status=2))
    spans.append(span(tid(20), sid(21), "SELECT", kind=3, parent=sid(20), start=T0 + MS,
                      end=T0 + 40 * MS, status=2, attributes={"db.system": "postgres"}))
    with Store(tmp_path / "c.duckdb") as store:
        ingest_bytes(store, jsonl([trace_request(spans, service="shop")]), source="shop.jsonl")
        yield store


def test_value_in_every_error_and_no_other_span(shop: Store) -> None:
    result = compare(shop, Scope(operations=("GET /a",)), Selection(errors=True), min_distinct=5)
    assert (result.n_selected, result.n_baseline) == (4, 6)
    top = result.values[0]
    assert (top.source, top.key, top.value, top.selected, top.baseline) == ("span", "region", "eu", 4, 0)
    assert (top.p_selected, top.p_baseline, top.diff) == (1.0, 0.0, 1.0)
    assert top.lift == pytest.approx((4.5 / 5) / (0.5 / 7))
    assert top.score == pytest.approx(1 - (0.5 / 7) / (4.5 / 5))
    by_value = {(v.key, v.value): v for v in result.values}
    assert by_value[("tier", "gold")].diff == 0.0  # 2 of 4 errors, 3 of 6 others
    assert result.values[-1].key == "region" and result.values[-1].value == "us"  # under-represented
    assert [h.key for h in result.high_cardinality] == ["request.id"]
    assert "error.type" not in {v.key for v in result.values}  # restates the selection
    assert ("StatusCode", "Error") not in by_value


def test_golden_json(shop: Store) -> None:
    text = to_json(compare(shop, Scope(operations=("GET /a",)), Selection(errors=True),
                           min_distinct=5).to_rows())
    path = GOLDEN / "compare_errors.json"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), "regenerate with TELLTALE_UPDATE_GOLDEN=1 and review the diff"


def test_origin_errors_leave_out_propagated_failures(shop: Store) -> None:
    every = compare(shop, Scope(), Selection(errors=True))
    assert every.n_selected == 6 and every.propagated == 1  # GET /b only passes SELECT's failure on
    origin = compare(shop, Scope(), Selection(origin_errors=True))
    assert (origin.n_selected, origin.n_baseline, origin.propagated) == (5, 7, 0)
    assert _top(origin) == [("region", "eu")]
    assert {(v.key, v.value): v.selected for v in origin.values}[("db.system", "postgres")] == 1


def test_slower_than_and_where(shop: Store) -> None:
    slow = compare(shop, Scope(), Selection(slower_than_ns=500 * MS))
    assert slow.n_selected == 4
    assert set(_top(slow, 2)) == {("region", "eu"), ("error.type", "Timeout")}  # both 4/4 vs 0/6
    where = compare(shop, Scope(), Selection(where=(("region", "eu"),)))
    assert (where.n_selected, where.n_baseline) == (4, 8)  # spans without region are baseline
    assert "region" not in {v.key for v in where.values}
    assert _top(where) == [("error.type", "Timeout")]  # 4 of 4 vs 0 of 8
    status = {(v.key, v.value): v for v in where.values}[("StatusCode", "Error")]
    assert (status.selected, status.baseline) == (4, 2)  # only an error selection hides the status
    by_field = compare(shop, Scope(), Selection(where=(("SpanName", "SELECT"),)))
    assert by_field.n_selected == 1
    assert set(_top(by_field, 2)) == {("db.system", "postgres"), ("SpanKind", "Client")}
    assert "SpanName" not in {v.key for v in by_field.values}


def test_empty_selection_and_no_match(shop: Store) -> None:
    with pytest.raises(ValueError, match="choose a selection"):
        compare(shop, Scope(), Selection())
    none = compare(shop, Scope(), Selection(where=(("region", "mars"),)))
    assert none.n_selected == 0 and none.values == []
    assert any("Nothing matches" in n for n in none.to_rows().notes)


# -- the simulator ---------------------------------------------------------------------------


def _incident(sim: SimResult, kind: str) -> dict[str, Any]:
    return next(i for i in sim.truth["incidents"] if i["kind"] == kind)


def _burst_values(burst: dict[str, Any]) -> set[tuple[str, str]]:
    return {(k, str(v)) for k, v in burst["attributes"].items()}


def test_error_burst_attribute_tops_payment_errors(sim_store: Store, sim: SimResult) -> None:
    burst = _incident(sim, "error_burst")
    scope = Scope(burst["start_ns"], burst["end_ns"], services=(burst["service"],))
    result = compare(sim_store, scope, Selection(errors=True))
    assert _top(result) == [("app.payment.provider", "acme-pay")]
    assert _burst_values(burst) <= set(_top(result, 3))  # and the 503 right behind it
    top = result.values[0]
    assert top.selected == burst["measured"]["tagged_errors_in_window"]  # server and client spans
    assert top.p_selected == 1.0


def test_error_burst_across_all_services(sim_store: Store, sim: SimResult) -> None:
    burst = _incident(sim, "error_burst")
    scope = Scope(burst["start_ns"], burst["end_ns"])
    origin = compare(sim_store, scope, Selection(origin_errors=True))
    assert _top(origin)[0] in _burst_values(burst)
    assert _burst_values(burst) <= set(_top(origin, 5))
    # Every failure, propagated ones included: the callers' 500s lead, the burst is still there.
    every = compare(sim_store, scope, Selection(errors=True))
    assert ("app.payment.provider", "acme-pay") in _top(every, 5)
    assert every.propagated > every.n_selected // 2


def test_slow_checkouts_are_the_new_version(sim_store: Store, sim: SimResult) -> None:
    deploy = _incident(sim, "latency_regression")
    result = compare(sim_store, Scope(services=("checkout",), operations=("POST /checkout",)),
                     Selection(slower_than_ns=200 * MS))
    top = result.values[0]
    assert (top.source, top.key, top.value) == (
        "resource", "service.version", deploy["attributes"]["service.version"]["after"])
    assert top.p_selected == 1.0


def test_cli_compare(sim_db: Path, sim: SimResult) -> None:
    burst = _incident(sim, "error_burst")
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})
    window = ["--since", str(burst["start_ns"]), "--until", str(burst["end_ns"])]
    res = runner.invoke(main, ["--db", str(sim_db), "compare", "--errors", "--service", "payment",
                               *window, "--format", "json", "--top", "5"])
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.output)
    assert len(out["rows"]) == 5
    assert (out["rows"][0]["key"], out["rows"][0]["value"]) == ("app.payment.provider", "acme-pay")
    table = runner.invoke(main, ["--db", str(sim_db), "compare", "--where",
                                 "app.payment.provider=acme-pay", *window])
    assert table.exit_code == 0, table.output
    assert "app.payment.provider" in table.output  # named in the note, not in the rows
    bad = runner.invoke(main, ["--db", str(sim_db), "compare", "--where", "novalue"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
    empty = runner.invoke(main, ["--db", str(sim_db), "compare"])
    assert empty.exit_code == 1 and "choose a selection" in empty.output
