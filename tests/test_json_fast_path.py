"""OTLP JSON trace lines take one statement into otel_traces when nothing needs quarantine, and
the staging path otherwise; whichever path runs, the store ends up the same."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import T0, pinned_settings, rows, sid, span, tid, trace_request
from telltale.ingest import ingest_bytes
from telltale.model import Format, Signal
from telltale.store import Store, otlp_json, staging_tables

# The fast statement's stand-in that always sends the lines to staging (it takes its parameters).
FORCE_STAGING = (f"SELECT CASE WHEN $batch + $min_ts + $max_ts + $max_bytes <> 0"
                 f" THEN error('{staging_tables.FALLBACK}') END")


def _line(i: int, **overrides: Any) -> bytes:
    s = span(tid(500 + i), sid(i + 1), f"op-{i}", start=T0 + i * 1000, attributes={"i": i})
    s.update(overrides)
    return orjson.dumps(trace_request([s]))


# Lines that store cleanly, and lines the staging path must take (each for another reason).
GOOD = [_line(i) for i in range(4)]
BAD = [
    _line(10, spanId="0000000000000000"),  # rejected span
    _line(11, name=""),  # rejected span
    b'{"resourceSpans":[{"scopeSpans":7}]}',  # mistyped container: suspect line
    b'{"resourceSpans":[{"scopeSpans":[{"spans":[null]}]}]}',  # a null span
    b'{"resourceSpans":[]}',  # holds no record (not quarantined)
    _line(12)[:40],  # torn
    orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {**span(tid(513), sid(14), "vendor"), "x-vendor": {"spanId": "ef" * 8}}]}]}]}),
]


def _store_contents(path: Path, data: bytes) -> tuple[Any, ...]:
    with Store(path, settings=pinned_settings(path)) as store:
        report = ingest_bytes(store, data, source="f.jsonl", fmt=Format.OTLP_JSON).report
        assert report is not None
        spans = rows(store, "SELECT * FROM otel_traces ORDER BY SpanName, SpanId")
        quarantine = rows(store, "SELECT * FROM telltale_quarantine ORDER BY Position")
        batches = rows(store, "SELECT * EXCLUDE (IngestedAt) FROM telltale_ingest_batches")
        return (report.stored, report.quarantined, str(spans), str(quarantine), str(batches))


def test_a_clean_file_never_touches_staging(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(otlp_json, "STAGE_SPANS", "SELECT error('staging was used')")
    stored, quarantined, *_ = _store_contents(tmp_path / "a.duckdb", b"\n".join(GOOD))
    assert stored == Counter({Signal.TRACES: 4}) and not quarantined


@pytest.mark.parametrize("bad", range(len(BAD)))
def test_a_file_needing_quarantine_is_stored_as_the_staging_path_stores_it(
        bad: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = b"\n".join([GOOD[0], BAD[bad], GOOD[1]])
    fast = _store_contents(tmp_path / "fast.duckdb", data)
    monkeypatch.setattr(otlp_json, "STORE_SPANS", FORCE_STAGING)
    assert fast == _store_contents(tmp_path / "staged.duckdb", data)
    assert fast[0][Signal.TRACES] >= 2  # the good lines around it are stored either way


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.sampled_from(GOOD + BAD), min_size=1, max_size=12))
def test_any_mix_stores_the_same_either_way(lines: list[bytes], tmp_path_factory: Any) -> None:
    tmp = tmp_path_factory.mktemp("mix")
    data = b"\n".join(lines)
    fast = _store_contents(tmp / "fast.duckdb", data)
    saved = otlp_json.STORE_SPANS
    otlp_json.STORE_SPANS = FORCE_STAGING
    try:
        assert fast == _store_contents(tmp / "staged.duckdb", data)
    finally:
        otlp_json.STORE_SPANS = saved
