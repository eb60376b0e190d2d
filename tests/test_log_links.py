"""Log ↔ trace links: attaching records to spans (by SpanId, else the innermost covering span of
their service), the link summary, error logs counting as span errors in compare and root
cause, and the real Nezha Train-Ticket logs (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SHARED_DATA, pinned_settings
from telltale.analyses.compare import Selection, compare
from telltale.analyses.log_links import link_quality, logs_of_trace
from telltale.analyses.rootcause import rank_root_causes
from telltale.analyses.scope import Scope
from telltale.ingest import ingest_paths
from telltale.model import Format
from telltale.normalize import staging
from telltale.normalize.staging import Decoded
from telltale.store import Store

T0 = 1_735_689_600 * 10**9
MS = 10**6
TA, TB, TC = "a" * 32, "b" * 32, "c" * 32
NEZHA = SHARED_DATA / "nezha" / "trainticket-2023-01-29"


def _span(trace: str, span: str, parent: str, service: str, name: str, start_ms: int,
          dur_ms: int, status: str = "Unset") -> dict[str, object]:
    return {"TraceId": trace, "SpanId": span, "ParentSpanId": parent, "ServiceName": service,
            "SpanName": name, "StartNs": T0 + start_ms * MS, "EndNs": T0 + (start_ms + dur_ms) * MS,
            "SpanKind": "Server", "StatusCode": status}


def _log(trace: str, span: str, service: str, at_ms: int, level: str, body: str) -> dict[str, object]:
    return {"TraceId": trace, "SpanId": span, "ServiceName": service, "Timestamp": T0 + at_ms * MS,
            "SeverityText": level, "SeverityNumber": {"INFO": 9, "ERROR": 17}[level], "Body": body}


def _table(schema: object, rows: list[dict[str, object]]) -> object:
    return staging.table(schema, {k: [r.get(k) for r in rows] for k in rows[0]})  # type: ignore[arg-type]


SPANS = [
    # trace A: frontend → api (two calls, the second nested in a db call of api)
    _span(TA, "a000000000000001", "", "frontend", "GET /", 0, 100),
    _span(TA, "a000000000000002", "a000000000000001", "api", "list", 10, 60),
    _span(TA, "a000000000000003", "a000000000000002", "api", "query", 20, 20),
    # trace B: a failing call whose status says nothing, only its error log does
    _span(TB, "b000000000000001", "", "frontend", "GET /", 0, 100),
    _span(TB, "b000000000000002", "b000000000000001", "api", "list", 10, 60),
]
LOGS = [
    _log(TA, "", "api", 25, "INFO", "inside the query: innermost covering api span"),
    _log(TA, "a000000000000001", "frontend", 5, "INFO", "by span id"),
    _log(TA, "", "api", 15, "INFO", "api, before the query starts"),
    _log(TA, "", "api", 200, "INFO", "after every span: fits none"),
    _log(TB, "b000000000000002", "api", 30, "ERROR", "boom: database unreachable"),
    _log(TC, "", "api", 5, "INFO", "trace never stored"),
    _log("", "", "api", 6, "INFO", "no trace id at all"),
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "t.duckdb", settings=pinned_settings(tmp_path / "t.duckdb"))
    s.commit(Decoded(spans=[_table(staging.SPANS, SPANS)], logs=[_table(staging.LOGS, LOGS)]),  # type: ignore[list-item]
             source="hand", fmt="test", content_hash="links")
    return s


def test_logs_of_trace_attach_to_spans_in_time_order(store: Store) -> None:
    logs = logs_of_trace(store, TA.upper())  # ids are matched case-insensitively
    assert [log.body for log in logs] == ["by span id", "api, before the query starts",
                                          "inside the query: innermost covering api span",
                                          "after every span: fits none"]
    assert [(log.attached_span_id, log.how) for log in logs] == [
        ("a000000000000001", "span_id"), ("a000000000000002", "time"),
        ("a000000000000003", "time"), (None, "")]
    assert logs_of_trace(store, TC)[0].attached_span_id is None
    assert logs_of_trace(store, "f" * 32) == []


def test_link_quality_by_service(store: Store) -> None:
    q = {s.service: s for s in link_quality(store, Scope()).services}
    api = q["api"]
    assert (api.logs, api.with_trace_id, api.with_span_id) == (6, 5, 1)
    assert (api.trace_stored, api.by_span_id, api.by_time) == (4, 1, 2)
    assert (q["frontend"].logs, q["frontend"].by_span_id) == (1, 1)
    rows = link_quality(store, Scope()).to_rows()
    total = rows.rows[-1]
    assert total["service"] == "(all)" and total["pct_attached"] == pytest.approx(100 * 4 / 6)


def test_error_logs_count_as_span_errors_in_compare(store: Store) -> None:
    with_logs = compare(store, Scope(), Selection(errors=True))
    assert with_logs.n_selected == 1 and with_logs.log_errors == 1
    assert any("error-level log" in n for n in with_logs.to_rows().notes)
    without = compare(store, Scope(), Selection(errors=True), log_errors=False)
    assert without.n_selected == 0 and without.log_errors == 0
    # The failure starts in api's span: frontend's root only passes it on.
    origin = compare(store, Scope(), Selection(origin_errors=True))
    assert origin.n_selected == 1


def test_error_logs_count_as_span_errors_in_rootcause(store: Store) -> None:
    incident, baseline = Scope(T0 - 10**9, T0 + 10**9), Scope(0, 1)
    ranking = rank_root_causes(store, incident, baseline, min_spans=1)
    api = next(r.evidence for r in ranking.ranked if r.service == "api")
    assert api.log_errors_incident == 1 and api.error_rate_incident == pytest.approx(1 / 3)
    assert any("come only from attached error logs" in n for n in ranking.notes)
    off = rank_root_causes(store, incident, baseline, min_spans=1, log_errors=False)
    api_off = next(r.evidence for r in off.ranked if r.service == "api")
    assert api_off.log_errors_incident == 0 and api_off.error_rate_incident == 0.0


@pytest.mark.skipif(not NEZHA.is_dir(), reason=f"Nezha data not present at {NEZHA}")
def test_nezha_logs_link_to_their_traces(tmp_path: Path) -> None:
    with Store(tmp_path / "n.duckdb", settings=pinned_settings(tmp_path / "n.duckdb")) as s:
        # As a user would: the day's trace and log folders, formats detected.
        results = ingest_paths(s, [str(NEZHA / "trace"), str(NEZHA / "log")])
        assert not any(r.error for r in results)
        assert {r.format for r in results} == {Format.CSV_SPANS, Format.NEZHA_LOGS}
        total = link_quality(s, Scope()).total()
        assert total.logs > 1000 and total.with_trace_id == total.logs
        assert total.trace_stored == total.with_trace_id  # every record's trace is stored
        assert total.attached >= 0.99 * total.with_trace_id
        trace_id = s.query("SELECT TraceId FROM otel_logs GROUP BY 1 HAVING count(*) > 3 "
                           "ORDER BY count(*) DESC, 1 LIMIT 1")[0][0]
        logs = logs_of_trace(s, trace_id)
        assert len(logs) > 3
        assert [log.time_ns for log in logs] == sorted(log.time_ns for log in logs)
        spans = {sid for (sid,) in s.query("SELECT SpanId FROM otel_traces WHERE TraceId = ?",
                                           [trace_id])}
        assert all(log.attached_span_id in spans for log in logs)
        # Nezha's log lines say the trace id in their text too: it matches the column.
        assert all(trace_id in log.body.lower() for log in logs if "TraceID:" in log.body)
