"""`telltale demo` end to end on a short window: every stage runs, the story is told."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from telltale.cli import main
from telltale.demo import run
from telltale.settings import Settings
from telltale.sim import BROKEN_FILE
from telltale.store import Store


@pytest.fixture
def demo_run(tmp_path: Path) -> tuple[str, Path, Path]:
    db = tmp_path / "demo.duckdb"
    out = tmp_path / "files"
    result = CliRunner().invoke(main, ["--db", str(db), "demo", "--out", str(out),
                                       "--minutes", "3"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output, db, out


def test_demo_ingests_everything_it_simulated(demo_run: tuple[str, Path, Path]) -> None:
    _, db, out = demo_run
    assert {"traces.jsonl", "logs.jsonl", "metrics.jsonl", "agents.jsonl", BROKEN_FILE,
            "truth.json", "report.html"} <= {p.name for p in out.iterdir()}
    with Store(db, read_only=True) as store:
        batches = store.query("SELECT Source, Format, RecordsRead, Stored + Quarantined "
                              "FROM telltale_ingest_batches ORDER BY Source")
        spans = store.query("SELECT count(*) FROM otel_traces")[0][0]
        logs = store.query("SELECT count(*) FROM otel_logs")[0][0]
        quarantined = store.query("SELECT count(*) FROM telltale_quarantine")[0][0]
    assert len(batches) == 5
    assert all(read == total for _, _, read, total in batches)  # nothing lost silently
    assert {fmt for _, fmt, _, _ in batches} == {"otlp-json", "events-jsonl"}
    assert spans > 10_000 and logs > 0
    assert quarantined == 190  # the torn file's broken lines, each kept with its reason


def test_demo_tells_what_it_found(demo_run: tuple[str, Path, Path]) -> None:
    output, _, out = demo_run
    assert "Trace quality by source" in output
    assert "what telltale found" in output
    flat = output.replace("\n", "")  # rich wraps long paths at the console width
    assert f"HTML report (one file, no network needed): {out / 'report.html'}" in flat
    assert "http://127.0.0.1:8080/" in flat  # how to open the dashboard
    assert "190 broken trace records quarantined" in output
    assert "catalog emits orphan spans" in output  # the simulator's orphan incident


def test_demo_twice_is_idempotent(tmp_path: Path) -> None:
    """Within one half hour the demo regenerates identical files: nothing is stored twice."""
    db = tmp_path / "demo.duckdb"
    settings = Settings(db_path=db, clock=lambda: 1_795_291_234_000_000_000)  # pinned clock
    counts = []
    for _ in range(2):
        run(settings, tmp_path / "f", 1.0, 7, Console(file=io.StringIO(), width=200))
        with Store(db, read_only=True) as store:
            counts.append(store.query(
                "SELECT (SELECT count(*) FROM otel_traces), (SELECT count(*) FROM otel_logs),"
                " (SELECT count(*) FROM telltale_quarantine),"
                " (SELECT count(*) FROM telltale_ingest_batches)")[0])
    assert counts[0] == counts[1]
    assert counts[0][0] > 0
