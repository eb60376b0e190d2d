"""CI predictions: beat the naive baselines where the history has a signal, say so where not."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from telltale.analyses import ci_predict
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.commands import ci as ci_commands
from telltale.sim.ci_history import HistoryConfig, generate
from telltale.store import Store


def _db(tmp: pytest.TempPathFactory, signal: bool) -> Path:
    path = tmp.mktemp("ci") / "ci.duckdb"
    with Store(path) as store:
        store.commit(generate(HistoryConfig(signal=signal)).decoded(), source="sim",
                     fmt="ci-jsonl", content_hash="h")
    return path


@pytest.fixture(scope="module")
def signal_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _db(tmp_path_factory, True)


def _metrics(ev: ci_predict.Evaluation) -> dict[str, tuple[float, float]]:
    return {m.metric: (m.model, m.baseline) for m in ev.metrics}


def test_beats_the_baseline_where_a_signal_exists(signal_db: Path) -> None:
    with Store(signal_db, read_only=True) as store:
        ev = ci_predict.evaluate(store, Scope())
    m = _metrics(ev)
    assert ev.duration_better and ev.failure_better
    assert m["MAE s"][0] < 0.9 * m["MAE s"][1] and m["MAPE"][0] < m["MAPE"][1]
    assert m["ROC AUC"][0] > m["ROC AUC"][1] + 0.05 and m["Brier"][0] < m["Brier"][1]
    assert ev.verdicts()[0].startswith("duration model beats")
    assert ev.test_runs == pytest.approx(0.25 * (ev.train_runs + ev.test_runs), abs=1)


def test_no_better_than_baseline_without_signal(tmp_path_factory: pytest.TempPathFactory) -> None:
    with Store(_db(tmp_path_factory, False), read_only=True) as store:
        ev = ci_predict.evaluate(store, Scope())
    assert not ev.duration_better and ev.failure_better is False
    notes = ev.to_rows().notes
    assert notes == ["duration model: no better than baseline (median per workflow)",
                     "failure model: no better than baseline (recent failure rate)"]
    assert _metrics(ev)["ROC AUC"][0] < 0.65  # nothing to learn


def test_too_little_history_is_a_clear_error(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.duckdb") as store, pytest.raises(ValueError, match="at least"):
        ci_predict.evaluate(store, Scope())


def test_predict_command_reports_model_and_baseline(signal_db: Path) -> None:
    if "ci" not in main.commands:
        ci_commands.register(main)
    args = ["--db", str(signal_db), "ci", "predict", "--workflow", "ci", "--branch",
            "feature/cart", "--event", "pull_request", "--files", "28", "--lines", "900",
            "--format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    prediction, evaluation = orjson.loads(result.output)
    row = prediction["rows"][0]
    # a big change on a feature branch: far likelier to fail than the baseline says
    assert row["failure_p"] > 0.6 > row["baseline_failure_p"]
    assert row["duration_s"] > 0 and row["baseline_duration_s"] > 0
    small = CliRunner().invoke(main, [*args[:11], "2", "--lines", "20", "--format", "json"])
    assert orjson.loads(small.output)[0]["rows"][0]["failure_p"] < 0.35  # the flaky job's share
    assert {r["metric"] for r in evaluation["rows"]} == {"MAE s", "MAPE", "Brier", "ROC AUC"}
    assert all("model" in r and "baseline" in r for r in evaluation["rows"])
    bad = CliRunner().invoke(main, ["--db", str(signal_db), "ci", "predict"])
    assert bad.exit_code != 0 and "--workflow is required" in bad.output
