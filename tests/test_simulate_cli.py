"""`telltale simulate`: files for `ingest`, ground truth beside them, or straight into the store."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from telltale.cli import main
from telltale.store import Store


def test_simulate_writes_files_that_ingest_reads_completely(tmp_path: Path) -> None:
    out, db = tmp_path / "sim", tmp_path / "s.duckdb"
    res = CliRunner().invoke(main, ["simulate", str(out), "--minutes", "1", "--format", "both"])
    assert res.exit_code == 0, res.output
    names = {p.name for p in (out / "telemetry").iterdir()}
    assert {"traces.jsonl", "traces.binpb", "logs.jsonl", "logs.binpb", "metrics.jsonl",
            "metrics.binpb", "agents.jsonl", "traces_broken.jsonl"} <= names
    truth = orjson.loads((out / "truth.json").read_bytes())
    # Only the JSON files: the protobuf ones hold the same records (stored once would be a
    # duplicate of the other encoding).
    json_files = [str(p) for p in sorted((out / "telemetry").glob("*.jsonl"))]
    res = CliRunner().invoke(main, ["--db", str(db), "ingest", *json_files, "--output", "json"])
    assert res.exit_code == 0, res.output
    results = {Path(r["source"]).name: r for r in orjson.loads(res.stdout)}
    assert results["traces.jsonl"]["stored"] == {"traces": truth["totals"]["spans"]}
    assert results["logs.jsonl"]["stored"] == {"logs": truth["totals"]["logs"]}
    broken = results["traces_broken.jsonl"]
    assert sum(broken["quarantined"].values()) == len(truth["broken_file"]["broken_lines"])


def test_simulate_into_store_matches_the_files(tmp_path: Path) -> None:
    db = tmp_path / "direct.duckdb"
    res = CliRunner().invoke(main, ["--db", str(db), "simulate", "--into-store", "--minutes", "1"])
    assert res.exit_code == 0, res.output
    with Store(db, read_only=True) as store:
        spans = store.query("SELECT count(*) FROM otel_traces")[0][0]
        quarantined = store.query("SELECT count(*) FROM telltale_quarantine")[0][0]
    assert spans > 1000 and quarantined == 0
    again = CliRunner().invoke(main, ["--db", str(db), "simulate", "--into-store", "--minutes", "1"])
    assert "already there" in again.output  # same seed and window: nothing stored twice


def test_simulate_needs_a_destination() -> None:
    res = CliRunner().invoke(main, ["simulate"])
    assert res.exit_code != 0
    assert "OUT_DIR" in res.output
