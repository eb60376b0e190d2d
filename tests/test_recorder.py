"""The recorder: many processes and threads lose nothing and tear no line; it never raises."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from telltale import recorder
from telltale.normalize.recorder import entries
from telltale.normalize.staging import Reject
from telltale.recorder import read_status

_WRITER = """
import sys, threading
from telltale import recorder
recorder.configure(sys.argv[1], max_records=int(sys.argv[3]), flush_lines=64)
n, tag = int(sys.argv[2]), sys.argv[4]
def work(t, k):
    for i in range(k):
        recorder.record("ev", tag=tag, thread=t, i=i, pad="x" * (i % 300))
threads = [threading.Thread(target=work, args=(t, n // 4)) for t in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
"""


def _segment(path: Path) -> list[dict[str, Any]]:
    """A segment's entries, as ingest reads them; a torn or interleaved line would be rejected."""
    rejects: list[Reject] = []
    rows = [record for _, _, record in entries(path.read_bytes(), rejects)]
    assert rejects == []
    return rows


def _rows(spool: Path) -> list[dict[str, Any]]:
    return [row for p in sorted(spool.glob("seg-*.jsonl")) for row in _segment(p)]


@pytest.mark.parametrize("events", [int(os.environ.get("TELLTALE_RECORDER_EVENTS", "50000"))])
def test_eight_processes_lose_nothing(tmp_path: Path, events: int) -> None:
    spool = tmp_path / "spool"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(spool), str(events), "1000",
                               f"p{k}"]) for k in range(8)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    rows = _rows(spool)
    seen = Counter((row["attrs"]["tag"], row["attrs"]["thread"], row["attrs"]["i"]) for row in rows)
    assert len(rows) == 8 * events
    assert len(seen) == 8 * events and max(seen.values()) == 1
    # Rotation at 1000 entries: every finalised segment holds at most 1000 (after its header
    # line, which starts with the marker format detection looks for), none is hidden.
    segments = list(spool.glob("seg-*.jsonl"))
    assert all(p.read_bytes().startswith(b'{"telltale.recorder":1,') for p in segments)
    assert all(len(_segment(p)) <= 1000 for p in segments)
    assert not list(spool.glob(".*.part"))
    status = read_status(spool)
    assert (status.processes, status.written, status.dropped_total) == (8, 8 * events, 0)


def test_keep_n_files_of_m_records(tmp_path: Path) -> None:
    recorder.configure(tmp_path, max_records=10, keep=3, flush_lines=1)
    for i in range(95):
        recorder.record("ev", i=i)
    recorder.close()
    segments = sorted(tmp_path.glob("seg-*.jsonl"))
    assert len(segments) == 3
    kept = [row["attrs"]["i"] for p in segments for row in _segment(p)]
    assert kept == list(range(70, 95))  # two full segments + the final 5; the oldest 7 deleted
    assert read_status(tmp_path).dropped["rotated_out"] == 7


def test_span_outcome_and_nesting(tmp_path: Path) -> None:
    recorder.configure(tmp_path)
    with pytest.raises(KeyError), recorder.span("outer", job="a") as outer:
        with recorder.span("inner") as inner:
            inner.outcome = "timeout"
        raise KeyError("boom")
    sid = recorder.record("spawn", model="m")
    recorder.update(sid, outcome="success", tokens=3)
    recorder.close()
    rows = {r["name"] if r["kind"] != "update" else "update": r for r in _rows(tmp_path)}
    assert rows["outer"]["status"] == "error" and rows["outer"]["error.type"] == "KeyError"
    assert rows["inner"]["parent"] == outer.id and rows["inner"]["trace"] == rows["outer"]["trace"]
    assert rows["inner"]["status"] == "error" and rows["inner"]["outcome"] == "timeout"
    assert rows["spawn"]["parent"] == "" and rows["update"]["id"] == sid
    assert rows["update"]["status"] == "ok" and rows["update"]["attrs"] == {"tokens": 3}


def test_never_raises_on_bad_values_or_unwritable_spool(tmp_path: Path) -> None:
    class Loop:
        def __repr__(self) -> str:
            raise RuntimeError("no repr either")

    recorder.configure(tmp_path, flush_lines=1)
    recorder.record("ok", value=object(), big=1 << 80)  # coerced, not lost
    recorder.record("bad", value=Loop())  # cannot even be shown: counted and dropped
    recorder.close()
    status = read_status(tmp_path)
    assert status.written == 1 and status.dropped["dropped_unserialisable"] == 1
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the spool directory should be")
    recorder.configure(blocked / "spool", flush_lines=1)
    results = [recorder.record("ev", i=i) for i in range(5)]
    with recorder.span("still-fine"):
        pass
    recorder.close()
    assert all(results)
    counters = recorder._flusher.writer.counters if recorder._flusher.writer else {}
    assert counters["io_error"] == 6 and "written" not in counters


def test_threads_share_one_writer(tmp_path: Path) -> None:
    recorder.configure(tmp_path, max_records=500, flush_lines=7)
    threads = [threading.Thread(target=lambda t=t: [recorder.record("t", t=t, i=i)
                                                    for i in range(2000)]) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    rows = [row["attrs"] for row in _rows(tmp_path)]
    assert sorted((r["t"], r["i"]) for r in rows) == [(t, i) for t in range(6) for i in range(2000)]


def _child_work(k: int) -> None:
    for i in range(1234):
        recorder.record("x", k=k, i=i)


def test_multiprocessing_fork_children_flush(tmp_path: Path) -> None:
    import multiprocessing

    recorder.configure(tmp_path, flush_lines=10_000)  # everything still buffered at exit
    recorder.record("parent")
    procs = [multiprocessing.get_context("fork").Process(target=_child_work, args=(k,))
             for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    recorder.close()
    names = Counter(row["name"] for row in _rows(tmp_path))
    assert names == {"parent": 1, "x": 3 * 1234}  # the parent's buffer is not written twice
