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


# The same three entries as version-1 lines (what recorders before the compact format wrote)
# and as a version-2 segment: both must decode to the same spans.
_V1 = b"""\
{"telltale.recorder":1,"kind":"event","id":"9f2c1a3b00000001","trace":"00000000000000009f2c1a3b00000001","parent":"","name":"agent.spawn","service":"old","start":1000,"attrs":{"model":"m"}}
{"telltale.recorder":1,"kind":"update","id":"9f2c1a3b00000001","time":5000,"outcome":"failure","status":"error","attrs":{"tokens":7}}
{"telltale.recorder":1,"kind":"span","id":"9f2c1a3b00000002","trace":"00000000000000009f2c1a3b00000001","parent":"9f2c1a3b00000001","name":"run","service":"old","start":1000,"end":3000,"status":"error","error.type":"KeyError","message":"'x'","attrs":{"target":"all"}}
"""
_V2 = b"""\
{"telltale.recorder":1,"kind":"segment","v":2,"service":"old","prefix":"9f2c1a3b","base":900,"host":"h","pid":1}
["e",1,0,"agent.spawn",100,{"model":"m"}]
["u","9f2c1a3b00000001",4100,{"tokens":7},"failure","error"]
["s",2,1,"run",100,2000,{"target":"all"},"error",null,"KeyError","'x'"]
"""


def _spans(data: bytes) -> list[dict[str, object]]:
    decoded = recorder_decoder.decode(data, DecodeOptions(source="seg"))
    assert decoded.rejects == []
    (table,) = decoded.spans
    return [{k: v for k, v in row.items() if k not in ("Pos", "RecordBytes")}
            for row in table.to_pylist()]


def test_old_and_compact_lines_decode_to_the_same_spans() -> None:
    old, new = _spans(_V1), _spans(_V2)
    assert old == new
    spawn, run = old
    assert (spawn["StartNs"], spawn["EndNs"], spawn["StatusCode"]) == (1000, 5000, "Error")
    assert (run["ParentSpanId"], run["TraceId"], run["EndNs"]) == (
        "9f2c1a3b00000001", "0" * 16 + "9f2c1a3b00000001", 3000)
    assert _spans(_V1 + _V2) == old  # both in one file (segments concatenated): read alike


def test_compact_lines_without_their_header_are_quarantined() -> None:
    decoded = recorder_decoder.decode(_V2[_V2.index(b"\n") + 1:], DecodeOptions(source="seg"))
    assert len(decoded.rejects) == 3 and not decoded.spans
