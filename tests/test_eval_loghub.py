"""`telltale eval loghub`: grouping accuracy on a tiny Loghub-layout directory made here, and
on the real Loghub 2k samples in ../shared/data/loghub when present."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from telltale.analyses.eval_loghub import grouping_accuracy
from telltale.cli import main
from telltale.commands import logs

LOGHUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"

if "loghub" not in main.commands["eval"].commands:  # type: ignore[attr-defined]
    logs.register(main)  # until cli.COMMAND_MODULES lists "logs"


def test_grouping_accuracy_needs_exact_line_sets() -> None:
    truth = ["A", "A", "B", "B", "C"]
    assert grouping_accuracy([1, 1, 2, 2, 3], truth) == 1.0
    assert grouping_accuracy([1, 1, 2, 2, 2], truth) == 0.4  # B and C merged: 3 lines wrong
    assert grouping_accuracy([1, 9, 2, 2, 3], truth) == 0.6  # A split: both its lines wrong


def _write_set(directory: Path, name: str, rows: list[tuple[str, str]]) -> None:
    (directory / f"{name}_2k.log").write_text("".join(f"hdr {c}\n" for c, _ in rows))
    with (directory / f"{name}_2k.log_structured.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["LineId", "Level", "Content", "EventId", "EventTemplate"])
        for i, (content, event) in enumerate(rows, 1):
            # EventTemplate deliberately misleading: the miner must only see Content.
            w.writerow([i, "INFO", content, event, "same for all"])


def test_eval_loghub_on_a_tiny_directory(tmp_path: Path) -> None:
    _write_set(tmp_path, "Tiny", [
        ("Opened file 1 for reading", "E1"), ("Opened file 22 for reading", "E1"),
        ("Closed connection from 10.0.0.1", "E2"), ("Closed connection from 10.0.0.9", "E2"),
        ("Heartbeat ok", "E3"),
    ])
    _write_set(tmp_path, "Other", [("ERROR disk full", "E1"), ("INFO disk full", "E2")])
    res = CliRunner().invoke(main, ["eval", "loghub", str(tmp_path), "--format", "json",
                                    "--no-drain3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out["datasets"]) == {"Tiny", "Other"}
    tiny = out["datasets"]["Tiny"]
    assert tiny["ga"] == 1.0 and tiny["drain_published"] is None and tiny["drain3_ga"] is None
    assert tiny["lines_per_s"] > 0 and tiny["speedup"] is None and out["speedup"] is None
    assert out["datasets"]["Other"]["ga"] == 1.0  # levels kept apart
    assert out["mean_ga"] == 1.0
    table = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["eval", "loghub", str(tmp_path),
                                                            "--no-drain3"])
    assert table.exit_code == 0 and "Tiny" in table.output and "mean" in table.output


def test_eval_loghub_rejects_a_directory_without_logs(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["eval", "loghub", str(tmp_path)])
    assert res.exit_code == 1 and "no <Name>_2k.log" in res.output


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"Loghub samples not present at {LOGHUB} "
                    "(../shared/data is optional)")
def test_eval_loghub_on_the_real_samples() -> None:
    res = CliRunner().invoke(main, ["eval", "loghub", str(LOGHUB), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out["datasets"]) >= {"HDFS", "Zookeeper", "Apache", "OpenSSH", "Linux"}
    assert out["datasets"]["HDFS"]["drain_published"] == 0.998
    assert out["mean_ga"] >= 0.90
    if out["drain3_mean_ga"] is not None:  # drain3 installed: same-run throughput ratio reported
        for score in out["datasets"].values():
            assert score["speedup"] == score["lines_per_s"] / score["drain3_lines_per_s"]
        assert out["speedup"] == out["lines_per_s"] / out["drain3_lines_per_s"]
    for name in ("HDFS", "Apache"):
        assert out["datasets"][name]["ga"] >= 0.99
