"""The trace-quality report on small hand-made traces whose defects are known in advance.

Layout (bucket width 60 s, T0 = 2025-01-01T00:00:00Z, a multiple of 60 s):

source shop.jsonl, first bucket [T0, T0+60s) — the bad one:
  A  clean:        a1 (frontend, root) → a2 (backend)
  B  orphan:       b1 (frontend, root); b2 (frontend) whose parent was never seen
  C  duplicate:    c1 (frontend, root) stored twice; c2 (backend) → c1
  D  clock skew:   d1 (frontend, root); d2 (backend) ends 4 s after d1; d3 (backend) ends
                   0.5 µs after d1 (inside the 1 µs tolerance)
  E  no root:      e1 (frontend) → missing parent; e2 (backend) → e1
  quarantined:     a span with no name (frontend, T0+40s), a span with an all-zero span id
                   (frontend, T0+41s), a span with start 0 (backend, no usable time), and a line
                   that is not JSON
source shop.jsonl, second bucket [T0+60s, T0+120s) — clean:
  F  clean:        f1 (frontend, root) → f2, f3 (backend)
source batch.jsonl, second bucket:
  G  clean:        g1 (backend, root) → g2 (backend)
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from conftest import T0, S, jsonl, sid, span, tid, trace_request
from telltale.analyses.quality import GroupBy, QualityCounts, pick_bucket, quality
from telltale.ingest import ingest_bytes
from telltale.model import QualityFlag as F
from telltale.model import QuarantineReason as Q
from telltale.render import quality as render
from telltale.store import Store

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TELLTALE_UPDATE_GOLDEN") == "1"
MINUTE = 60 * S
A, B, C, D, E, FF, G = (tid(n) for n in (0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0x6))
MISSING = sid(0xDEAD)


def _shop() -> bytes:
    frontend = [
        span(A, sid(1), "a1", start=T0 + 1 * S, end=T0 + 5 * S),
        span(B, sid(1), "b1", start=T0 + 10 * S, end=T0 + 20 * S),
        span(B, sid(2), "b2", parent=MISSING, start=T0 + 11 * S, end=T0 + 12 * S),
        span(C, sid(1), "c1", start=T0 + 20 * S, end=T0 + 30 * S),
        span(C, sid(1), "c1", start=T0 + 20 * S, end=T0 + 30 * S),
        span(D, sid(1), "d1", start=T0 + 30 * S, end=T0 + 31 * S),
        span(E, sid(1), "e1", parent=MISSING, start=T0 + 35 * S, end=T0 + 36 * S),
        span(tid(0x99), sid(1), "", start=T0 + 40 * S, end=T0 + 41 * S),
        span(tid(0x98), "0" * 16, "zero-id", start=T0 + 41 * S, end=T0 + 42 * S),
        span(FF, sid(1), "f1", start=T0 + 61 * S, end=T0 + 70 * S),
    ]
    backend = [
        span(A, sid(2), "a2", parent=sid(1), start=T0 + 2 * S, end=T0 + 3 * S),
        span(C, sid(2), "c2", parent=sid(1), start=T0 + 21 * S, end=T0 + 22 * S),
        span(D, sid(2), "d2", parent=sid(1), start=T0 + 30 * S + 500 * 10**6,
             end=T0 + 35 * S),
        span(D, sid(3), "d3", parent=sid(1), start=T0 + 30 * S, end=T0 + 31 * S + 500),
        span(E, sid(2), "e2", parent=sid(1), start=T0 + 35 * S, end=T0 + 35 * S + 10),
        span(tid(0x97), sid(1), "no-time", start=0, end=10),
        span(FF, sid(2), "f2", parent=sid(1), start=T0 + 62 * S, end=T0 + 63 * S),
        span(FF, sid(3), "f3", parent=sid(1), start=T0 + 64 * S, end=T0 + 65 * S),
    ]
    req = {"resourceSpans": trace_request(frontend, service="frontend")["resourceSpans"]
           + trace_request(backend, service="backend")["resourceSpans"]}
    return jsonl([req]) + b"this line is not JSON\n"


def _batch() -> bytes:
    return jsonl([trace_request([
        span(G, sid(1), "g1", start=T0 + 90 * S, end=T0 + 95 * S),
        span(G, sid(2), "g2", parent=sid(1), start=T0 + 91 * S, end=T0 + 92 * S),
    ], service="backend")])


@pytest.fixture
def shop(store: Store) -> Store:
    for source, data in (("shop.jsonl", _shop()), ("batch.jsonl", _batch())):
        result = ingest_bytes(store, data, source=source)
        assert result.report is not None and not result.report.already_ingested
    return store


def _flags(c: QualityCounts) -> dict[str, int]:
    return {f.value: c.flags.get(f, 0) for f in F}


def test_by_source_counts_and_scores(shop: Store) -> None:
    report = quality(shop, by=GroupBy.SOURCE, bucket_ns=MINUTE)
    groups = {g.key: g for g in report.groups}
    assert list(groups) == ["batch.jsonl", "shop.jsonl"]

    s = groups["shop.jsonl"].spans
    assert s.stored == 15
    assert dict(s.quarantined) == {Q.MISSING_NAME: 1, Q.BAD_SPAN_ID: 1, Q.BAD_TIMESTAMP: 1,
                                   Q.UNPARSABLE: 1}
    assert s.received == 19
    assert _flags(s) == {"orphan": 2, "duplicate": 2, "clock_skew": 1, "no_root": 2}
    assert s.good == 5  # A (2) and F (3)
    assert s.score == pytest.approx(5 / 19)

    b = groups["batch.jsonl"].spans
    assert (b.stored, b.received, b.good, b.score) == (2, 2, 2, 1.0)
    assert _flags(b) == {"orphan": 0, "duplicate": 0, "clock_skew": 0, "no_root": 0}

    t = report.total
    assert (t.stored, t.received, t.good) == (17, 21, 7)
    assert t.score == pytest.approx(7 / 21)


def test_first_bucket_bad_second_clean(shop: Store) -> None:
    report = quality(shop, by=GroupBy.SOURCE, bucket_ns=MINUTE)
    shop_group = next(g for g in report.groups if g.key == "shop.jsonl")
    assert list(shop_group.buckets) == [T0, T0 + MINUTE]
    first, second = shop_group.buckets[T0], shop_group.buckets[T0 + MINUTE]
    # 12 stored spans of A–E, plus the two quarantined records that carry a usable time.
    assert (first.stored, first.good) == (12, 2)
    assert dict(first.quarantined) == {Q.MISSING_NAME: 1, Q.BAD_SPAN_ID: 1}
    assert first.score == pytest.approx(2 / 14)
    assert _flags(first) == {"orphan": 2, "duplicate": 2, "clock_skew": 1, "no_root": 2}
    assert (second.stored, second.good, second.received, second.score) == (3, 3, 3, 1.0)
    assert _flags(second) == {"orphan": 0, "duplicate": 0, "clock_skew": 0, "no_root": 0}
    # Records without a usable time count for the group, in no bucket.
    in_buckets = sum(sum(c.quarantined.values()) for c in shop_group.buckets.values())
    assert sum(shop_group.spans.quarantined.values()) - in_buckets == 2


def test_by_service(shop: Store) -> None:
    report = quality(shop, by=GroupBy.SERVICE, bucket_ns=MINUTE)
    groups = {g.key: g.spans for g in report.groups}
    assert sorted(groups) == ["(unknown)", "backend", "frontend"]

    fe = groups["frontend"]
    assert (fe.stored, fe.good) == (8, 2)
    assert dict(fe.quarantined) == {Q.MISSING_NAME: 1, Q.BAD_SPAN_ID: 1}
    assert _flags(fe) == {"orphan": 2, "duplicate": 2, "clock_skew": 0, "no_root": 1}
    assert fe.score == pytest.approx(2 / 10)

    be = groups["backend"]
    assert (be.stored, be.good) == (9, 5)
    assert dict(be.quarantined) == {Q.BAD_TIMESTAMP: 1}
    assert _flags(be) == {"orphan": 0, "duplicate": 0, "clock_skew": 1, "no_root": 1}
    assert be.score == pytest.approx(5 / 10)

    unknown = groups["(unknown)"]  # the line that is not JSON has no service
    assert (unknown.stored, dict(unknown.quarantined), unknown.score) == (
        0, {Q.UNPARSABLE: 1}, 0.0)

    # Grouping changes the cut, never the totals.
    by_source = quality(shop, by=GroupBy.SOURCE, bucket_ns=MINUTE).total
    for attr in ("stored", "good", "received"):
        assert getattr(report.total, attr) == getattr(by_source, attr)
    assert report.total.flags == by_source.flags
    assert report.total.quarantined == by_source.quarantined


def test_score_formula_holds_everywhere(shop: Store) -> None:
    """Documented: score = good / (stored + quarantined); None when nothing arrived."""
    for by in GroupBy:
        report = quality(shop, by=by, bucket_ns=MINUTE)
        for c in [report.total, *(g.spans for g in report.groups),
                  *(b for g in report.groups for b in g.buckets.values())]:
            received = c.stored + sum(c.quarantined.values())
            assert c.received == received
            assert c.good <= c.stored
            assert c.score == (c.good / received if received else None)
    assert QualityCounts().score is None


def test_skew_tolerance_is_a_parameter(shop: Store) -> None:
    strict = quality(shop, bucket_ns=MINUTE, skew_tolerance_ns=0).total
    default = quality(shop, bucket_ns=MINUTE).total
    lenient = quality(shop, bucket_ns=MINUTE, skew_tolerance_ns=10 * S).total
    # d3 overruns its parent by 500 ns: skewed only with no tolerance at all.
    assert (strict.flags[F.CLOCK_SKEW], default.flags[F.CLOCK_SKEW],
            lenient.flags[F.CLOCK_SKEW]) == (2, 1, 0)
    # With d2 tolerated, trace D (3 spans) becomes good.
    assert lenient.good == default.good + 3 == strict.good + 3


def test_time_window_selects_whole_traces(shop: Store) -> None:
    report = quality(shop, by=GroupBy.SOURCE, since=T0, until=T0 + MINUTE, bucket_ns=MINUTE)
    assert [g.key for g in report.groups] == ["shop.jsonl"]
    g = report.groups[0]
    assert list(g.buckets) == [T0]
    assert (g.spans.stored, g.spans.good) == (12, 2)
    # d2 ends after the window; its trace is still judged whole.
    assert g.spans.flags[F.CLOCK_SKEW] == 1
    # A window that starts mid-trace brings the whole trace: b2 at T0+11s selects B.
    narrow = quality(shop, since=T0 + 11 * S, until=T0 + 12 * S, bucket_ns=MINUTE)
    assert narrow.total.stored == 2
    assert narrow.total.flags[F.ORPHAN] == 1


def test_default_bucket_gives_about_a_dozen(shop: Store) -> None:
    report = quality(shop)
    assert report.bucket_ns == pick_bucket(report.since, report.until)
    n = (report.until - report.since) // report.bucket_ns + 1
    assert 1 <= n <= 13
    assert pick_bucket(0, 12 * S) == 1 * S
    assert pick_bucket(0, 13 * S) == 5 * S
    assert pick_bucket(0, 3600 * S) == 300 * S
    assert pick_bucket(0, 10 * 365 * 86_400 * S) == 86_400 * S


def test_empty_store(store: Store) -> None:
    report = quality(store)
    assert report.groups == []
    assert report.total.received == 0
    assert report.total.score is None
    doc = orjson.loads(render.to_json(report))
    assert doc["total"]["score"] is None
    assert render.to_csv(report).splitlines() == [
        "source,bucket_start,received,stored,quarantined,orphan,duplicate,clock_skew,no_root,"
        "good,score"]


def _logs(*times: int) -> bytes:
    return jsonl([{"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "backend"}}]}, "scopeLogs": [
        {"logRecords": [{"timeUnixNano": str(t), "body": {"stringValue": "x"}}
                        for t in times]}]}]}])


def test_logs_and_metrics_counted_beside_traces(store: Store) -> None:
    ingest_bytes(store, _logs(T0 + S, 0), source="logs.jsonl")
    ingest_bytes(store, _batch(), source="batch.jsonl")
    report = quality(store, by=GroupBy.SOURCE)
    groups = {g.key: g for g in report.groups}
    assert groups["logs.jsonl"].logs_stored == 1
    assert dict(groups["logs.jsonl"].other_quarantined) == {"logs": 1}
    assert groups["logs.jsonl"].spans.received == 0
    assert report.total.stored == 2  # the trace score ignores other signals


def test_store_with_only_logs_reports_them(store: Store) -> None:
    ingest_bytes(store, _logs(T0, T0 + 5 * S), source="logs.jsonl")
    (g,) = quality(store).groups
    assert (g.key, g.logs_stored) == ("logs.jsonl", 2)


def test_store_with_only_rejected_spans_reports_them(store: Store) -> None:
    """Every span quarantined (with usable times): the report must still count them."""
    bad = [span(tid(1), sid(i), "", start=T0 + i * S, end=T0 + i * S + 1) for i in range(1, 4)]
    ingest_bytes(store, jsonl([trace_request(bad)]), source="bad.jsonl")
    report = quality(store)
    assert report.total.received == 3
    assert dict(report.total.quarantined) == {Q.MISSING_NAME: 3}
    assert report.total.score == 0.0


# -- rendering -------------------------------------------------------------------------------


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with TELLTALE_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} changed; if intended, regenerate with " \
                                     "TELLTALE_UPDATE_GOLDEN=1 and review the diff"


def test_json_rendering_golden(shop: Store) -> None:
    text = render.to_json(quality(shop, by=GroupBy.SOURCE, bucket_ns=MINUTE))
    _golden("quality.json", text)
    doc: dict[str, Any] = orjson.loads(text)
    assert doc["by"] == "source"
    assert doc["bucket_seconds"] == 60
    assert doc["since"] == "2025-01-01T00:00:01Z"
    shop_doc = next(g for g in doc["groups"] if g["key"] == "shop.jsonl")
    assert shop_doc["spans"]["quarantined"] == {"bad_span_id": 1, "bad_timestamp": 1,
                                                "missing_name": 1, "unparsable": 1}
    assert [b["start"] for b in shop_doc["buckets"]] == ["2025-01-01T00:00:00Z",
                                                         "2025-01-01T00:01:00Z"]
    assert [b["score"] for b in shop_doc["buckets"]] == [round(2 / 14, 6), 1.0]


def test_json_rendering_is_deterministic(shop: Store) -> None:
    first = render.to_json(quality(shop, by=GroupBy.SERVICE, bucket_ns=MINUTE))
    second = render.to_json(quality(shop, by=GroupBy.SERVICE, bucket_ns=MINUTE))
    assert first == second


def test_csv_rendering_golden(shop: Store) -> None:
    text = render.to_csv(quality(shop, by=GroupBy.SERVICE, bucket_ns=MINUTE))
    _golden("quality_by_service.csv", text)
    table = list(csv.DictReader(io.StringIO(text)))
    overall = {r["service"]: r for r in table if r["bucket_start"] == "all"}
    assert overall["backend"]["score"] == "0.500"
    assert overall["frontend"]["received"] == "10"
    assert overall["frontend"]["duplicate"] == "2"
    assert len(table) == 3 + 2 + 2  # one "all" row per service, plus its buckets


def test_table_rendering_mentions_every_group(shop: Store) -> None:
    console = Console(record=True, width=160, color_system=None)
    render.print_table(quality(shop, by=GroupBy.SOURCE, bucket_ns=MINUTE), console)
    out = console.export_text()
    assert "shop.jsonl" in out and "batch.jsonl" in out
    assert "0.263" in out  # 5 / 19
    assert "unparsable 1" in out
