"""`ingest --follow` on OTLP JSON lines (the Collector's file exporter): every complete line is
committed once, a line still being written waits for its end, and a restart resumes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from conftest import T0, pinned_settings, span, trace_request
from telltale.cli import main
from telltale.model import Format
from telltale.normalize.log_follow import FollowError, follow, follow_format
from telltale.store import Store


def _line(n: int) -> bytes:
    return orjson.dumps(trace_request([span(f"{n:032x}", f"{n:016x}", f"op-{n}",
                                            start=T0 + n)])) + b"\n"


def test_a_growing_exporter_file_is_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(_line(1) + _line(2))
    db = tmp_path / "t.duckdb"
    third = _line(3)

    def append(data: bytes) -> None:
        with path.open("ab") as f:
            f.write(data)

    def names(store: Store) -> list[str]:
        return [r[0] for r in store.query("SELECT SpanName FROM otel_traces ORDER BY Timestamp")]

    seen: list[list[str]] = []
    with Store(db, settings=pinned_settings(db)) as store:
        steps = [lambda: append(third[:40]),  # the exporter is half-way through a line
                 lambda: append(third[40:] + b"{torn\n")]

        def stop() -> bool:
            seen.append(names(store))
            if steps:
                steps.pop(0)()
                return False
            return True

        state = follow(store, path, poll_s=0, quiet_s=60, stop=stop, fmt=Format.OTLP_JSON.value)
        # Lines 1-2 at once; the half-written line 3 waits for its end.
        assert seen == [["op-1", "op-2"], ["op-1", "op-2"], ["op-1", "op-2", "op-3"]]
        assert sum(r.total_quarantined for r in state.reports) == 1
        assert store.query("SELECT Position, Reason FROM telltale_quarantine") == [
            ("line 4", "unparsable")]
    append(_line(5))
    with Store(db, settings=pinned_settings(db)) as store:  # a restart: only line 5 is new
        again = follow(store, path, poll_s=0, quiet_s=60, stop=lambda: True,
                       fmt=Format.OTLP_JSON.value)
        assert names(store) == ["op-1", "op-2", "op-3", "op-5"]
        assert [r.source for r in again.reports] == [f"{path}:5"]


def test_follow_detects_the_exporter_format(tmp_path: Path) -> None:
    traces, log, empty = tmp_path / "traces.jsonl", tmp_path / "app.log", tmp_path / "new.jsonl"
    pretty = tmp_path / "request.json"
    traces.write_bytes(_line(1))
    log.write_text("2024-01-15T10:00:00Z INFO one\n")
    empty.write_bytes(b"")
    pretty.write_bytes(orjson.dumps(orjson.loads(_line(1)), option=orjson.OPT_INDENT_2))
    assert follow_format(traces) == Format.OTLP_JSON.value
    assert follow_format(log) == follow_format(empty) == Format.LOG_TEXT.value
    # One pretty-printed request is no stream of lines: following it is refused in one line.
    with pytest.raises(FollowError, match="one OTLP JSON document"):
        follow_format(pretty)
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "t.duckdb"), "ingest", "--follow",
                                       str(pretty)])
    assert result.exit_code == 2 and "ingest it without --follow" in result.output
