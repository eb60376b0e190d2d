"""`serve --spool`: finished recorder segments are ingested once each, while the app writes."""

from __future__ import annotations

from pathlib import Path

from telltale import recorder
from telltale.serve.committer import ByteBudget, Committer
from telltale.serve.spool_watch import SpoolWatcher
from telltale.serve.stats import ReceiverStats
from telltale.store import Store


def test_segments_are_ingested_once_as_they_finish(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    store = Store(tmp_path / "s.duckdb")
    committer = Committer(store, ByteBudget(64 << 20), ReceiverStats())
    committer.start()
    watcher = SpoolWatcher(spool, committer)
    try:
        recorder.configure(spool, max_records=10)
        for i in range(25):
            recorder.record("task", n=i)
        recorder.flush()
        assert watcher.scan() == 2  # two finished segments of 10; 5 events still in progress
        assert watcher.scan() == 0  # nothing new: nothing stored twice
        recorder.close()  # finalises the last segment
        assert watcher.scan() == 1
    finally:
        committer.stop()
    with store:
        assert store.query("SELECT count(*) FROM otel_traces") == [(25,)]
        assert store.query("SELECT count(*) FROM telltale_ingest_batches") == [(3,)]
