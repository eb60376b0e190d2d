"""The store's one write path: validation rules, idempotency, atomicity, migrations, locking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from conftest import (
    NOW_NS,
    T0,
    S,
    json_to_proto,
    jsonl,
    pinned_settings,
    rows,
    sid,
    span,
    tid,
    trace_request,
)
from telltale.analyses.quality import GroupBy, quality
from telltale.ingest import ingest_bytes, ingest_paths
from telltale.model import Format, QualityFlag, Signal
from telltale.model import QuarantineReason as Q
from telltale.normalize.staging import Decoded
from telltale.settings import EARLIEST_VALID_NS, Settings
from telltale.store import Store, StoreLockedError, schema
from telltale.store.duck import StoreError

DAY = 86_400 * S
GOOD = span(tid(0xA1), sid(0xB1), "good", start=T0, end=T0 + 5 * S)


def _bad(**changes: Any) -> dict[str, Any]:
    """A span that would be valid but for `changes` (a value of None removes the field)."""
    out = span(tid(0xA2), sid(0xB2), "bad", start=T0, end=T0 + S)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


VALIDATION_CASES: list[tuple[str, dict[str, Any], Q]] = [
    ("trace id missing", _bad(traceId=None), Q.MISSING_TRACE_ID),
    ("trace id empty", _bad(traceId=""), Q.MISSING_TRACE_ID),
    ("trace id too short", _bad(traceId="ab" * 15), Q.BAD_TRACE_ID),
    ("trace id too long", _bad(traceId="ab" * 17), Q.BAD_TRACE_ID),
    ("trace id not hex", _bad(traceId="zz" + "ab" * 15), Q.BAD_TRACE_ID),
    ("trace id all zero", _bad(traceId="0" * 32), Q.BAD_TRACE_ID),
    ("span id missing", _bad(spanId=None), Q.MISSING_SPAN_ID),
    ("span id too short", _bad(spanId="abc"), Q.BAD_SPAN_ID),
    ("span id not hex", _bad(spanId="x" * 16), Q.BAD_SPAN_ID),
    ("span id all zero", _bad(spanId="0" * 16), Q.BAD_SPAN_ID),
    ("parent id too long", _bad(parentSpanId="ab" * 9), Q.BAD_PARENT_ID),
    ("parent id not hex", _bad(parentSpanId="g" * 16), Q.BAD_PARENT_ID),
    ("start zero", _bad(startTimeUnixNano="0"), Q.BAD_TIMESTAMP),
    ("start missing", _bad(startTimeUnixNano=None), Q.BAD_TIMESTAMP),
    ("end missing", _bad(endTimeUnixNano=None), Q.BAD_TIMESTAMP),
    ("start in seconds", _bad(startTimeUnixNano=str(T0 // S), endTimeUnixNano=str(T0 // S + 1)),
     Q.BAD_TIMESTAMP),
    ("start before 1990", _bad(startTimeUnixNano=str(EARLIEST_VALID_NS - 1),
                               endTimeUnixNano=str(EARLIEST_VALID_NS + S)), Q.BAD_TIMESTAMP),
    ("start far future", _bad(startTimeUnixNano=str(NOW_NS + 2 * DAY),
                              endTimeUnixNano=str(NOW_NS + 3 * DAY)), Q.BAD_TIMESTAMP),
    ("start not a number", _bad(startTimeUnixNano="yesterday"), Q.BAD_TIMESTAMP),
    ("end before start", _bad(endTimeUnixNano=str(T0 - 1)), Q.NEGATIVE_DURATION),
    ("name missing", _bad(name=None), Q.MISSING_NAME),
    ("name empty", _bad(name=""), Q.MISSING_NAME),
]


def _ids(cases: list[tuple[str, Any, Any]]) -> list[str]:
    return [c[0] for c in cases]


@pytest.mark.parametrize(("label", "bad", "reason"), VALIDATION_CASES, ids=_ids(VALIDATION_CASES))
def test_validation_rule_json(label: str, bad: dict[str, Any], reason: Q, store: Store) -> None:
    data = jsonl([trace_request([GOOD, bad])])
    result = ingest_bytes(store, data, source="v.jsonl")
    assert result.format is Format.OTLP_JSON
    assert result.report.stored == Counter({Signal.TRACES: 1})
    assert result.report.quarantined == Counter({reason: 1})
    assert store.query("SELECT SpanName FROM otel_traces") == [("good",)]
    (q,) = rows(store, "SELECT * FROM telltale_quarantine")
    assert (q["Signal"], q["Reason"]) == ("traces", reason.value)
    assert q["Position"] == "line 1 span 1.1.2"
    # The staged record is kept whole, so the rejected values can be inspected.
    kept = orjson.loads(q["Raw"])
    assert kept.get("TraceId") == bad.get("traceId")
    assert kept.get("SpanId") == bad.get("spanId")
    assert kept.get("SpanName") == bad.get("name")


PROTO_CASES: list[tuple[str, dict[str, Any], Q]] = [
    ("trace id missing", _bad(traceId=None), Q.MISSING_TRACE_ID),
    ("trace id 8 bytes", _bad(traceId="ab" * 8), Q.BAD_TRACE_ID),
    ("trace id all zero", _bad(traceId="0" * 32), Q.BAD_TRACE_ID),
    ("span id missing", _bad(spanId=None), Q.MISSING_SPAN_ID),
    ("span id 4 bytes", _bad(spanId="ab" * 4), Q.BAD_SPAN_ID),
    ("span id all zero", _bad(spanId="0" * 16), Q.BAD_SPAN_ID),
    ("parent id 9 bytes", _bad(parentSpanId="ab" * 9), Q.BAD_PARENT_ID),
    ("start zero", _bad(startTimeUnixNano="0"), Q.BAD_TIMESTAMP),
    ("start before 1990", _bad(startTimeUnixNano=str(EARLIEST_VALID_NS - 1)), Q.BAD_TIMESTAMP),
    ("start far future", _bad(startTimeUnixNano=str(NOW_NS + 2 * DAY),
                              endTimeUnixNano=str(NOW_NS + 3 * DAY)), Q.BAD_TIMESTAMP),
    ("end before start", _bad(endTimeUnixNano=str(T0 - 1)), Q.NEGATIVE_DURATION),
    ("name missing", _bad(name=None), Q.MISSING_NAME),
]


@pytest.mark.parametrize(("label", "bad", "reason"), PROTO_CASES, ids=_ids(PROTO_CASES))
def test_validation_rule_protobuf(label: str, bad: dict[str, Any], reason: Q,
                                  store: Store) -> None:
    payload = json_to_proto(trace_request([GOOD, bad])).SerializeToString()
    result = ingest_bytes(store, payload, source="v.bin", fmt=Format.OTLP_PROTO,
                          signal=Signal.TRACES)
    assert result.report.stored == Counter({Signal.TRACES: 1})
    assert result.report.quarantined == Counter({reason: 1})
    assert store.query("SELECT SpanName FROM otel_traces") == [("good",)]
    assert store.query("SELECT Reason FROM telltale_quarantine") == [(reason.value,)]


def test_timestamp_bounds_are_inclusive(store: Store) -> None:
    """The earliest valid instant and the end of the future allowance are both accepted."""
    latest = NOW_NS + store.settings.max_future_seconds * S
    spans = [
        span(tid(1), sid(1), "at-earliest", start=EARLIEST_VALID_NS, end=EARLIEST_VALID_NS + 1),
        span(tid(1), sid(2), "at-latest", start=latest, end=latest + 1),
        span(tid(1), sid(3), "past-latest", start=latest + 1, end=latest + 2),
        span(tid(1), sid(4), "zero-duration", start=T0, end=T0),
    ]
    result = ingest_bytes(store, jsonl([trace_request(spans)]), source="b.jsonl")
    assert result.report.quarantined == Counter({Q.BAD_TIMESTAMP: 1})
    assert sorted(n for (n,) in store.query("SELECT SpanName FROM otel_traces")) == [
        "at-earliest", "at-latest", "zero-duration"]
    assert store.query("SELECT Duration FROM otel_traces WHERE SpanName = 'zero-duration'") == [
        (0,)]


def test_quarantined_span_keeps_its_own_time(store: Store) -> None:
    spans = [span(tid(1), sid(1), "", start=T0 + 7, end=T0 + 9),
             span(tid(1), sid(2), "x", start=0, end=5)]
    ingest_bytes(store, jsonl([trace_request(spans)]), source="t.jsonl")
    assert sorted(store.query("SELECT Reason, Timestamp FROM telltale_quarantine")) == [
        (Q.BAD_TIMESTAMP.value, None), (Q.MISSING_NAME.value, T0 + 7)]


@pytest.mark.parametrize("fmt", [Format.OTLP_JSON, Format.OTLP_PROTO])
def test_oversize_record_is_quarantined(fmt: Format, db_path: Path) -> None:
    small = span(tid(1), sid(1), "small", attributes={"k": "v"})
    big = span(tid(1), sid(2), "big", attributes={"blob": "x" * 5000})
    req = trace_request([small, big])
    data = jsonl([req]) if fmt is Format.OTLP_JSON else json_to_proto(req).SerializeToString()
    with Store(db_path, settings=pinned_settings(db_path, max_record_bytes=1000)) as store:
        result = ingest_bytes(store, data, source="o", fmt=fmt, signal=Signal.TRACES)
        assert result.report.stored == Counter({Signal.TRACES: 1})
        assert result.report.quarantined == Counter({Q.OVERSIZE: 1})
        assert store.query("SELECT SpanName FROM otel_traces") == [("small",)]
        (raw,) = store.query("SELECT Raw FROM telltale_quarantine WHERE Reason = 'oversize'")[0]
        assert "x" * 5000 in raw


def test_oversize_log_record_is_quarantined(db_path: Path) -> None:
    req = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [
        {"timeUnixNano": str(T0), "body": {"stringValue": "short"}},
        {"timeUnixNano": str(T0), "body": {"stringValue": "y" * 5000}},
    ]}]}]}
    with Store(db_path, settings=pinned_settings(db_path, max_record_bytes=1000)) as store:
        result = ingest_bytes(store, jsonl([req]), source="logs.jsonl")
        assert result.report.stored == Counter({Signal.LOGS: 1})
        assert result.report.quarantined == Counter({Q.OVERSIZE: 1})
        assert store.query("SELECT Body FROM otel_logs") == [("short",)]
        assert store.query("SELECT Signal FROM telltale_quarantine") == [("logs",)]


@pytest.mark.parametrize("fmt", [Format.OTLP_JSON, Format.OTLP_PROTO])
def test_zero_parent_is_root_and_ids_are_lowercased(fmt: Format, store: Store) -> None:
    upper_trace, upper_span = "5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174"
    root = span(upper_trace, upper_span, "root", parent="0" * 16)
    child = span(upper_trace, "AAAABBBBCCCCDDDD", "child", parent=upper_span)
    child["links"] = [{"traceId": "ABCDEF" * 5 + "01", "spanId": "0123456789ABCDEF"}]
    req = trace_request([root, child])
    data = jsonl([req]) if fmt is Format.OTLP_JSON else json_to_proto(req).SerializeToString()
    ingest_bytes(store, data, source="ids", fmt=fmt, signal=Signal.TRACES)
    got = {r["SpanName"]: r for r in rows(store, "SELECT * FROM otel_traces")}
    assert got["root"]["TraceId"] == upper_trace.lower()
    assert got["root"]["SpanId"] == upper_span.lower()
    assert got["root"]["ParentSpanId"] == ""
    assert got["child"]["ParentSpanId"] == upper_span.lower()
    assert got["child"]["SpanId"] == "aaaabbbbccccdddd"
    assert [(k["TraceId"], k["SpanId"]) for k in got["child"]["Links"]] == [
        (("abcdef" * 5 + "01"), "0123456789abcdef")]


def test_attributes_queryable_by_key(store: Store) -> None:
    spans = [span(tid(1), sid(i), f"GET /item/{i}",
                  attributes={"http.route": "/item/{id}" if i % 2 else "/health",
                              "http.status_code": 200 + i})
             for i in range(1, 7)]
    ingest_bytes(store, jsonl([trace_request(spans)]), source="a.jsonl")
    got = store.query("SELECT SpanAttributes['http.route'] AS route, count(*) FROM otel_traces "
                      "GROUP BY route ORDER BY route")
    assert got == [("/health", 3), ("/item/{id}", 3)]
    assert store.query("SELECT SpanName FROM otel_traces "
                       "WHERE SpanAttributes['http.status_code'] = '204'") == [("GET /item/4",)]
    assert store.query("SELECT count(*) FROM otel_traces "
                       "WHERE SpanAttributes['no.such.key'] IS NOT NULL") == [(0,)]


def test_report_counts_add_up_and_match_batch_row(store: Store) -> None:
    spans = [GOOD, _bad(name=""), _bad(spanId="0" * 16)]
    result = ingest_bytes(store, jsonl([trace_request(spans)]) + b"garbage\n", source="c.jsonl")
    rep = result.report
    assert rep.records_read == rep.total_stored + rep.total_quarantined == 4
    assert store.query("SELECT Source, Format, RecordsRead, Stored, Quarantined "
                       "FROM telltale_ingest_batches") == [("c.jsonl", "otlp-json", 4, 1, 3)]


# -- idempotency -----------------------------------------------------------------------------


def _counts(store: Store) -> tuple[int, ...]:
    return tuple(store.query(f"SELECT count(*) FROM {t}")[0][0]  # noqa: S608
                 for t in [*schema.CORE_TABLES, "telltale_quarantine", "telltale_ingest_batches"])


def test_same_file_twice_stores_nothing_the_second_time(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl([trace_request([GOOD, _bad(name="")])]))
    (first,) = ingest_paths(store, [str(path)])
    before = _counts(store)
    (second,) = ingest_paths(store, [str(path)])
    assert not first.report.already_ingested
    assert second.report.already_ingested
    assert second.report.batch_id == first.report.batch_id
    assert second.report.total_stored == second.report.total_quarantined == 0
    assert _counts(store) == before
    # A byte-identical copy under another name is the same content: also not stored twice.
    copy = tmp_path / "copy-of-a.jsonl"
    copy.write_bytes(path.read_bytes())
    (third,) = ingest_paths(store, [str(copy)])
    assert third.report.already_ingested
    assert _counts(store) == before


def test_same_spans_from_another_file_are_stored_and_flagged(tmp_path: Path,
                                                             store: Store) -> None:
    req = trace_request([span(tid(5), sid(1), "root"),
                         span(tid(5), sid(2), "child", parent=sid(1))])
    a, b = tmp_path / "a.jsonl", tmp_path / "b.json"
    a.write_bytes(jsonl([req]))
    b.write_bytes(orjson.dumps(req, option=orjson.OPT_INDENT_2))  # same spans, other bytes
    ingest_paths(store, [str(a)])
    (second,) = ingest_paths(store, [str(b)])
    assert not second.report.already_ingested
    assert second.report.stored == Counter({Signal.TRACES: 2})
    assert store.query("SELECT count(*) FROM otel_traces") == [(4,)]
    report = quality(store, by=GroupBy.SOURCE)
    assert report.total.stored == 4
    assert report.total.flags[QualityFlag.DUPLICATE] == 4
    assert report.total.good == 0


# -- atomicity -------------------------------------------------------------------------------


class _FailingConnection:
    """Forwards to a DuckDB connection but raises when a statement containing `marker` runs."""

    def __init__(self, con: duckdb.DuckDBPyConnection, marker: str) -> None:
        self._con = con
        self._marker = marker

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if self._marker in sql:
            raise duckdb.IOException("disk full (simulated)")
        return self._con.execute(sql, *args, **kwargs)

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if self._marker in sql:
            raise duckdb.IOException("disk full (simulated)")
        return self._con.executemany(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@pytest.mark.parametrize("marker", ["INSERT INTO otel_logs", "INSERT INTO telltale_ingest_batches",
                                    "INSERT INTO telltale_quarantine"])
def test_failed_commit_leaves_nothing_behind(marker: str, store: Store) -> None:
    traces = trace_request([GOOD, _bad(name="")])
    logs = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [
        {"timeUnixNano": str(T0), "body": {"stringValue": "hello"}}]}]}]}
    data = jsonl([traces, logs])
    empty = _counts(store)
    real = store.con
    store.con = _FailingConnection(real, marker)  # type: ignore[assignment]
    try:
        with pytest.raises(duckdb.IOException, match="simulated"):
            ingest_bytes(store, data, source="tx.jsonl")
    finally:
        store.con = real
    assert _counts(store) == empty
    # Nothing half-done is remembered either: the same content ingests fully afterwards.
    result = ingest_bytes(store, data, source="tx.jsonl")
    assert not result.report.already_ingested
    assert result.report.stored == Counter({Signal.TRACES: 1, Signal.LOGS: 1})


def test_failure_in_a_later_step_rolls_back_earlier_steps(store: Store,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans are already inserted when the logs step fails: they must not survive."""
    original = Store._check_and_store

    def failing(self: Store, *args: Any, **kwargs: Any) -> None:
        if Signal.LOGS in args:
            assert self.con.execute("SELECT count(*) FROM otel_traces").fetchall() == [(1,)]
            raise RuntimeError("boom")
        original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "_check_and_store", failing)
    logs = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [
        {"timeUnixNano": str(T0), "body": {"stringValue": "hello"}}]}]}]}
    with pytest.raises(RuntimeError, match="boom"):
        ingest_bytes(store, jsonl([trace_request([GOOD]), logs]), source="x.jsonl")
    assert store.query("SELECT count(*) FROM otel_traces") == [(0,)]
    assert store.query("SELECT count(*) FROM telltale_ingest_batches") == [(0,)]


# -- migrations ------------------------------------------------------------------------------


LATEST = len(schema.MIGRATIONS)
APPLIED = [(v, NOW_NS) for v in range(1, LATEST + 1)]


def test_new_store_is_at_the_latest_schema_version(store: Store) -> None:
    assert store.schema_version() == LATEST >= 2
    assert store.query("SELECT Version, AppliedAt FROM telltale_schema_version "
                       "ORDER BY Version") == APPLIED
    tables = {t for (t,) in store.query("SELECT table_name FROM information_schema.tables")}
    assert set(schema.CORE_TABLES) | {"telltale_quarantine", "telltale_ingest_batches"} <= tables


def test_reopening_does_not_rerun_migrations(db_path: Path) -> None:
    with Store(db_path, settings=pinned_settings(db_path)) as s:
        ingest_bytes(s, jsonl([trace_request([GOOD])]), source="x.jsonl")
    later = Settings(db_path=db_path, clock=lambda: NOW_NS + DAY)
    with Store(db_path, settings=later) as s:
        assert s.query("SELECT Version, AppliedAt FROM telltale_schema_version "
                       "ORDER BY Version") == APPLIED
        assert s.query("SELECT count(*) FROM otel_traces") == [(1,)]
    with Store(db_path, read_only=True) as s:
        assert s.schema_version() == LATEST


def test_an_older_store_is_migrated_forward_on_open(db_path: Path) -> None:
    """A store written before the log-template migration (version 1) gains its tables on the
    next writing open and keeps its data; a read-only open leaves it as it is."""
    with Store(db_path, settings=pinned_settings(db_path)) as s:
        ingest_bytes(s, jsonl([trace_request([GOOD])]), source="x.jsonl")
    con = duckdb.connect(str(db_path))
    added = [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'telltale_log%'"
    ).fetchall()]
    assert added
    for table in added:
        con.execute(f"DROP TABLE {table}")
    con.execute("DELETE FROM telltale_schema_version WHERE Version > 1")
    con.close()
    with Store(db_path, read_only=True) as s:
        assert s.schema_version() == 1
    with Store(db_path, settings=pinned_settings(db_path)) as s:
        assert s.schema_version() == LATEST
        assert s.query("SELECT count(*) FROM otel_traces") == [(1,)]
        tables = {t for (t,) in s.query("SELECT table_name FROM information_schema.tables")}
        assert set(added) <= tables


def _bump_version(db_path: Path, version: int) -> None:
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO telltale_schema_version VALUES (?, 0)", [version])
    con.close()


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_newer_schema_is_refused(db_path: Path, read_only: bool) -> None:
    Store(db_path, settings=pinned_settings(db_path)).close()
    _bump_version(db_path, LATEST + 1)
    with pytest.raises(StoreError) as info:
        Store(db_path, read_only=read_only)
    message = str(info.value)
    assert f"schema version {LATEST + 1}" in message
    assert "upgrade telltale" in message.lower()
    assert str(db_path) in message


def test_not_a_telltale_store(tmp_path: Path) -> None:
    plain = tmp_path / "plain.duckdb"
    con = duckdb.connect(str(plain))
    con.execute("CREATE TABLE x (a INTEGER)")
    con.close()
    with pytest.raises(StoreError, match="not a telltale store"):
        Store(plain, read_only=True)
    junk = tmp_path / "junk.duckdb"
    junk.write_text("this is not a database\n" * 200)
    with pytest.raises(StoreError, match="cannot open"):
        Store(junk)


# -- read-only and locking -------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys
    from telltale.store import Store
    store = Store(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.read()
    store.close()
""")


def test_read_only_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(StoreError) as info:
        Store(missing, read_only=True)
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)
    assert not missing.exists()


@pytest.mark.parametrize("read_only", [True, False], ids=["reader", "second-writer"])
def test_store_held_by_another_process(db_path: Path, read_only: bool) -> None:
    Store(db_path, settings=pinned_settings(db_path)).close()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as info:
            Store(db_path, read_only=read_only)
    finally:
        holder.communicate(timeout=30)  # closes its stdin (it exits) and our pipe ends
    message = str(info.value)
    assert f"process {holder.pid}" in message
    assert str(db_path) in message
    assert "\n" not in message and "Traceback" not in message
    assert len(message) < 300
    # Once the holder is gone the store opens normally.
    with Store(db_path, read_only=True) as s:
        assert s.schema_version() == LATEST


def test_read_only_store_refuses_writes(db_path: Path) -> None:
    Store(db_path, settings=pinned_settings(db_path)).close()
    with Store(db_path, read_only=True) as s, pytest.raises(StoreError, match="read-only"):
        ingest_bytes(s, jsonl([trace_request([GOOD])]), source="x.jsonl")


def test_two_stores_on_one_file_in_one_process(tmp_path: Path) -> None:
    """DuckDB shares one database instance per file within a process; a second Store on the
    same file (a library user, a forwarded command) must open, not fail on its functions."""
    path = tmp_path / "two.duckdb"
    with Store(path) as first:
        first.commit(Decoded(), source="x", fmt="none", content_hash="x")
    with Store(path, read_only=True) as a, Store(path, read_only=True) as b:
        assert a.schema_version() == b.schema_version() == len(schema.MIGRATIONS)
