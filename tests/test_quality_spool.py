"""`telltale quality --spool`: the recorder's own losses are reported, never silent."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from conftest import jsonl, sid, span, tid, trace_request
from telltale import recorder
from telltale.cli import main
from telltale.recorder.spool import STATUS_FILE


def _store(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "q.duckdb"
    data = tmp_path / "t.jsonl"
    data.write_bytes(jsonl([trace_request([span(tid(1), sid(1), "root")])]))
    result = CliRunner().invoke(main, ["--db", str(db), "ingest", str(data)])
    assert result.exit_code == 0, result.output
    return db


def test_losses_counted_by_processes_are_summed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    # Two processes' latest counters (the status file keeps one line per change).
    lines = [
        {"host": "h", "pid": 1, "started_ns": 1, "counters": {"written": 5}},
        {"host": "h", "pid": 1, "started_ns": 1, "counters": {"written": 10, "disk_full": 3}},
        {"host": "h", "pid": 2, "started_ns": 2, "counters": {"written": 7, "coerced_values": 2}},
    ]
    (spool / STATUS_FILE).write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    result = CliRunner().invoke(main, ["--db", str(_store(tmp_path)), "quality", "--spool",
                                       str(spool), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["recorder"] == {
        "processes": 2, "written": 17, "not_written": {"disk_full": 3}, "not_written_total": 3,
        "coerced_values": 2, "unreadable_status_lines": 0}
    table = CliRunner().invoke(main, ["--db", str(_store(tmp_path / "b")), "quality",
                                      "--spool", str(spool)], terminal_width=200)
    assert "not written: disk_full 3" in table.output


def test_a_real_spool_reports_what_it_wrote(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    recorder.configure(spool, max_records=10)
    for i in range(25):
        recorder.record("task", n=i)
    recorder.record("odd", value=object())  # not JSON-able: written as its repr, and counted
    recorder.close()
    result = CliRunner().invoke(main, ["--db", str(_store(tmp_path)), "quality", "--spool",
                                       str(spool), "--format", "json"])
    status = orjson.loads(result.output)["recorder"]
    assert (status["written"], status["not_written_total"], status["coerced_values"]) == (26, 0, 1)
