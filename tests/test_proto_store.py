"""OTLP protobuf spans validated while they are stored: valid ones land in otel_traces, each
rejected one in quarantine with its reason, position and staged row, per part of a group commit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import NOW_NS, pinned_settings
from telltale.model import QuarantineReason as Q
from telltale.model import Signal
from telltale.normalize.otlp_arrow import trace_requests
from telltale.normalize.staging import Decoded
from telltale.store import Store, otlp_proto, staging_tables
from telltale.store.batches import BatchSource

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
# (span id, parent id, name, start offset, end offset, padding) and the expected defect.
SPANS: list[tuple[bytes, bytes, str, int, int, int, Q | None]] = [
    (bytes.fromhex("b7ad6b7169203331"), b"", "root", 0, 10, 0, None),
    (bytes.fromhex("00f067aa0ba902b7"), bytes.fromhex("b7ad6b7169203331"), "child", 1, 5, 0, None),
    (bytes.fromhex("0000000000000000"), b"", "zero-id", 0, 1, 0, Q.BAD_SPAN_ID),
    (bytes.fromhex("00f067aa0ba9"), b"", "short-id", 0, 1, 0, Q.BAD_SPAN_ID),
    (bytes.fromhex("00000000000000a1"), b"\x01", "bad-parent", 0, 1, 0, Q.BAD_PARENT_ID),
    (bytes.fromhex("00000000000000a2"), b"", "", 0, 1, 0, Q.MISSING_NAME),
    (bytes.fromhex("00000000000000a3"), b"", "backwards", 5, 1, 0, Q.NEGATIVE_DURATION),
    (bytes.fromhex("00000000000000a4"), b"", "huge", 0, 1, 600, Q.OVERSIZE),
]


def _request(service: str, trace_id: bytes = TRACE, *, only_valid: bool = False) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", service
    scope = rs.scope_spans.add()
    for span_id, parent, name, start, end, pad, defect in SPANS:
        if only_valid and defect is not None:
            continue
        s = scope.spans.add()
        s.trace_id, s.span_id, s.parent_span_id, s.name = trace_id, span_id, parent, name
        s.start_time_unix_nano, s.end_time_unix_nano = NOW_NS - 1000 + start, NOW_NS - 1000 + end
        a = s.attributes.add()
        a.key, a.value.int_value = "n", 7
        if pad:
            a = s.attributes.add()
            a.key, a.value.string_value = "pad", "x" * pad
    return req.SerializeToString()


def _commit(store: Store, frames: list[bytes], hashes: list[str]) -> list[Counter[Q]]:
    traces, rejects = trace_requests(frames, ["request"] * len(frames), list(range(len(frames))))
    assert traces is not None and not rejects
    reports = store.commit_parts(Decoded(proto_traces=[traces]),
                                 [BatchSource(f"part {i}", "otlp-proto", h)
                                  for i, h in enumerate(hashes)])
    for r in reports:
        assert r.already_ingested or r.stored == Counter({Signal.TRACES: 2})
    return [r.quarantined for r in reports]


def test_each_rejected_span_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    expected = Counter(d for *_, d in SPANS if d is not None)
    with Store(db, settings=pinned_settings(db, max_record_bytes=500)) as store:
        assert _commit(store, [_request("a")], ["h1"]) == [expected]
        assert sorted(store.query("SELECT SpanName, ParentSpanId FROM otel_traces")) == [
            ("child", "b7ad6b7169203331"), ("root", "")]
        got = store.query("SELECT BatchId, Position, Reason, Raw FROM telltale_quarantine"
                          " ORDER BY Position")
        want = sorted((1, f"request span {i}", d.value) for i, (*_, d) in
                      enumerate(SPANS, start=1) if d is not None)
        assert [g[:3] for g in got] == want
        staged = {g[1]: orjson.loads(g[3]) for g in got}
        assert staged["request span 6"]["SpanName"] == ""
        assert staged["request span 3"]["SpanId"] == "0000000000000000"
        assert staged["request span 8"]["SpanAttributes"] == {"n": "7", "pad": "x" * 600}
        assert store.query("SELECT count(*) FROM telltale_span_index") == [(2,)]


def _contents(db: Path, frames: list[bytes]) -> tuple[object, ...]:
    with Store(db, settings=pinned_settings(db, max_record_bytes=500)) as store:
        traces, _ = trace_requests(frames, ["request"] * len(frames), list(range(len(frames))))
        assert traces is not None
        reports = store.commit_parts(Decoded(proto_traces=[traces]),
                                     [BatchSource(f"part {i}", "otlp-proto", f"h{i}")
                                      for i in range(len(frames))])
        return ([(r.stored, r.quarantined) for r in reports],
                store.query("SELECT * FROM otel_traces ORDER BY SpanId"),
                store.query("SELECT * FROM telltale_quarantine ORDER BY BatchId, Position"),
                store.query("SELECT * FROM telltale_span_index ORDER BY Key"))


def test_a_clean_commit_is_one_statement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_proto, "STORE_SPANS", dict.fromkeys(otlp_proto.STORE_SPANS,
                                                                 "SELECT error('slow path')"))
    reports, spans, quarantine, _ = _contents(tmp_path / "t.duckdb",
                                              [_request("a", only_valid=True)])
    assert reports == [(Counter({Signal.TRACES: 2}), Counter())] and len(spans) == 2
    assert not quarantine


def test_spans_to_quarantine_are_stored_as_the_staging_path_stores_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = bytes.fromhex("1af7651916cd43dd8448eb211c80319c")
    frames = [_request("a", only_valid=True), _request("b", other)]
    tried = _contents(tmp_path / "tried.duckdb", frames)  # the one statement, then staging
    assert tried[0][1] == (Counter({Signal.TRACES: 2}),
                           Counter(d for *_, d in SPANS if d is not None))
    def first_statement(message: str) -> None:
        monkeypatch.setattr(otlp_proto, "STORE_ALL_SPANS", dict.fromkeys(
            otlp_proto.STORE_ALL_SPANS,
            f"SELECT error('{message}'), $batch, $min_ts, $max_ts, $max_bytes, $skipped"))

    first_statement("disk full")  # any other failure is the commit's failure
    with pytest.raises(duckdb.Error, match="disk full"):
        _contents(tmp_path / "failed.duckdb", frames)
    first_statement(staging_tables.FALLBACK)  # always the staging path
    assert _contents(tmp_path / "staged.duckdb", frames) == tried


def test_group_commit_skips_known_parts_and_reports_each(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    expected = Counter(d for *_, d in SPANS if d is not None)
    other = bytes.fromhex("1af7651916cd43dd8448eb211c80319c")
    with Store(db, settings=pinned_settings(db, max_record_bytes=500)) as store:
        _commit(store, [_request("a")], ["h1"])
        # part 0 was committed before, part 2 repeats part 1: only part 1 is stored.
        quarantined = _commit(store, [_request("a"), _request("b", other), _request("b", other)],
                              ["h1", "h2", "h2"])
        assert quarantined == [Counter(), expected, Counter()]
        assert store.query("SELECT BatchId, count(*) FROM otel_traces GROUP BY ALL"
                           " ORDER BY 1") == [(1, 2), (3, 2)]
        assert store.query("SELECT BatchId, count(*) FROM telltale_quarantine GROUP BY ALL"
                           " ORDER BY 1") == [(1, 6), (3, 6)]
        assert store.query("SELECT BatchId, Stored, Quarantined FROM telltale_ingest_batches"
                           " ORDER BY 1") == [(1, 2, 6), (3, 2, 6)]


def test_spans_keep_file_order_across_record_batches(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Many record batches are stored in parallel, yet in the order of the file (a join to the
    resources would let DuckDB store them out of order)."""
    monkeypatch.setattr(otlp_proto, "_ROW_GROUP", 64)
    frames = []
    for r in range(40):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        attr = rs.resource.attributes.add()
        attr.key, attr.value.string_value = "service.name", f"svc-{r % 3}"
        scope = rs.scope_spans.add()
        for i in range(100):
            s = scope.spans.add()
            s.trace_id, s.span_id = TRACE, (r * 1000 + i + 1).to_bytes(8, "big")
            s.name = f"{r:02d}-{i:03d}"
            s.start_time_unix_nano, s.end_time_unix_nano = NOW_NS - 1000, NOW_NS
        frames.append(req.SerializeToString())
    db = tmp_path / "t.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        store.con.execute("SET threads = 4")
        _commit_all(store, frames)
        names = [n for (n,) in store.query("SELECT SpanName FROM otel_traces ORDER BY rowid")]
        assert names == sorted(names) and len(names) == 4000
        services = store.query("SELECT SpanName, ServiceName FROM otel_traces"
                               " WHERE SpanName LIKE '%-000' ORDER BY 1")
        assert services == [(f"{r:02d}-000", f"svc-{r % 3}") for r in range(40)]


def _commit_all(store: Store, frames: list[bytes]) -> None:
    traces, rejects = trace_requests(frames, ["request"] * len(frames))
    assert traces is not None and not rejects
    (report,) = store.commit_parts(Decoded(proto_traces=[traces]),
                                   [BatchSource("file", "otlp-proto", "h")])
    assert report.stored == Counter({Signal.TRACES: len(frames) * 100})


def test_a_thread_per_batch_only_where_batches_would_share_threads_unevenly() -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")

    def threads() -> int:
        return int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])

    for batches, inside in ((1, 2), (2, 2), (3, 3), (4, 2), (5, 2)):
        with otlp_proto.thread_per_batch(con, batches):
            assert threads() == inside, batches
        assert threads() == 2
    with pytest.raises(RuntimeError), otlp_proto.thread_per_batch(con, 3):
        raise RuntimeError("the insert failed")
    assert threads() == 2


def test_a_span_to_quarantine_falls_back_also_when_threads_were_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three record batches on two threads run on three (thread_per_batch); the one statement
    then fails on the bad span, and the commit must still fall back to staging."""
    monkeypatch.setattr(otlp_proto, "_ROW_GROUP", 64)
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    for i in range(150):
        s = scope.spans.add()
        s.trace_id, s.span_id = TRACE, (i + 1).to_bytes(8, "big")
        s.name = "" if i == 140 else f"op-{i}"
        s.start_time_unix_nano, s.end_time_unix_nano = NOW_NS - 1000, NOW_NS
    db = tmp_path / "t.duckdb"
    with Store(db, settings=pinned_settings(db)) as store:
        store.con.execute("SET threads = 2")
        traces, _ = trace_requests([req.SerializeToString()], ["request"], [0])
        assert traces is not None
        assert len(otlp_proto.merge([traces]).spans.to_batches()) == 3
        (report,) = store.commit_parts(Decoded(proto_traces=[traces]),
                                       [BatchSource("part", "otlp-proto", "h")])
        assert report.stored == Counter({Signal.TRACES: 149})
        assert report.quarantined == Counter({Q.MISSING_NAME: 1})
        assert store.query("SELECT current_setting('threads')") == [(2,)]


def test_a_group_of_json_and_protobuf_requests_reports_each_part_its_own_spans(
        tmp_path: Path) -> None:
    """The receiver commits JSON and protobuf requests together: each one-statement path
    counts only the spans of its own parts (records read = stored + quarantined)."""
    from conftest import span, trace_request
    from telltale.serve.decode import Part, decode_group

    body = orjson.dumps(trace_request([span("ab" * 16, "cd" * 8, "json-span",
                                            start=NOW_NS - 1000)]))
    parts = [Part(Signal.TRACES, body, "application/json", "otlp-http"),
             Part(Signal.TRACES, _request("a", only_valid=True), "application/x-protobuf",
                  "otlp-http")]
    decoded, sources, _ = decode_group(parts)
    db = tmp_path / "t.duckdb"
    with Store(db, settings=pinned_settings(db, max_record_bytes=500)) as store:
        reports = store.commit_parts(decoded, sources)
        assert [r.stored for r in reports] == [Counter({Signal.TRACES: 1}),
                                               Counter({Signal.TRACES: 2})]
        assert store.query("SELECT BatchId, Stored FROM telltale_ingest_batches"
                           " ORDER BY 1") == [(1, 1), (2, 2)]
        assert store.query("SELECT BatchId, count(*) FROM otel_traces GROUP BY ALL"
                           " ORDER BY 1") == [(1, 1), (2, 2)]
