"""Recorder spool → spans: merged updates, statuses, nesting; detected without options."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import commit_decoded
from telltale import recorder
from telltale.model import Format
from telltale.normalize import recorder as recorder_decoder
from telltale.normalize.options import DecodeOptions


def _spool(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    recorder.configure(spool, service="orchestrator")
    wid = recorder.record("agent.spawn", model="claude-x", caste="worker")
    recorder.update(wid, outcome="failure", tokens=1200)
    with pytest.raises(ValueError), recorder.span("run", task="t-1"):
        with recorder.span("step") as step:
            step.set(n=3)
        raise ValueError("bad input")
    recorder.record("lonely.event", ok=True)
    recorder.close()
    return spool


def test_decoded_spans(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    (segment,) = spool.glob("seg-*.jsonl")
    data = segment.read_bytes() + b'{"telltale.recorder":1,"kind":"update","id":"ffff","time":1}\n'
    assert recorder_decoder.looks_like_recorder(data)
    decoded = recorder_decoder.decode(data, DecodeOptions(source="seg"))
    store, report = commit_decoded(tmp_path, decoded, Format.EVENTS_JSONL)
    try:
        rows = store.query(
            "SELECT SpanName, StatusCode, StatusMessage, Duration, ServiceName, "
            "SpanAttributes['outcome'], SpanAttributes['tokens'], SpanAttributes['error.type'], "
            "SpanAttributes['n'], ParentSpanId = '' FROM otel_traces ORDER BY SpanName")
    finally:
        store.close()
    by_name = {r[0]: r for r in rows}
    assert sorted(by_name) == ["agent.spawn", "lonely.event", "run", "step"]
    spawn = by_name["agent.spawn"]
    assert spawn[1] == "Error" and spawn[5] == "failure" and spawn[6] == "1200" and spawn[3] > 0
    assert by_name["run"][1:3] == ("Error", "bad input") and by_name["run"][7] == "ValueError"
    assert by_name["step"][1] == "Ok" and by_name["step"][8] == "3" and not by_name["step"][9]
    assert by_name["lonely.event"][1] == "Unset" and by_name["lonely.event"][3] == 0
    assert {r[4] for r in rows} == {"orchestrator"}
    assert report.total_quarantined == 1  # the update whose event is not in this source


@pytest.mark.skipif(not hasattr(Format, "RECORDER_JSONL"), reason="detection hook not wired yet")
def test_ingest_spool_dir_without_options(tmp_path: Path) -> None:
    from telltale.ingest import ingest_paths
    from telltale.store.duck import Store

    spool = _spool(tmp_path)
    store = Store(tmp_path / "t.duckdb")
    try:
        results = ingest_paths(store, [str(spool)])
        assert [r.format for r in results] == [Format.RECORDER_JSONL]
        assert store.query("SELECT count(*) FROM otel_traces")[0][0] == 4
    finally:
        store.close()
