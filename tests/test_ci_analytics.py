"""CI analytics on the simulated history: the planted flaky job, trend and broken day are found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from telltale.analyses import ci
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.commands import ci as ci_commands
from telltale.sim.ci_history import DAY_S, START_NS, History, HistoryConfig, generate
from telltale.store import Store

ALL = Scope()


@pytest.fixture(scope="module")
def history() -> History:
    return generate(HistoryConfig(signal=True))


@pytest.fixture(scope="module")
def ci_db(tmp_path_factory: pytest.TempPathFactory, history: History) -> Path:
    path = tmp_path_factory.mktemp("ci") / "ci.duckdb"
    with Store(path) as store:
        report = store.commit(history.decoded(), source="sim", fmt="ci-jsonl", content_hash="h")
        assert not report.quarantined
    return path


@pytest.fixture
def store(ci_db: Path) -> Iterator[Store]:
    with Store(ci_db, read_only=True) as s:
        yield s


def test_summary_has_every_job_with_percentiles(store: Store) -> None:
    rows = {(r["workflow"], r["job"]): r for r in ci.summary(store, ALL, "job").rows}
    assert set(rows) == {("ci", j) for j in ("lint", "unit", "integration", "build")} | {
        ("docs", "build-docs"), ("docs", "deploy-docs")}
    lint = rows[("ci", "lint")]
    assert lint["p50_s"] <= lint["p90_s"] <= lint["p95_s"] <= lint["max_s"]
    assert 30 < lint["p50_s"] < 45  # checkout 5 s + ruff 30 s
    assert rows[("ci", "integration")]["success_rate"] == pytest.approx(0.75, abs=0.05)
    assert lint["queue_mean_s"] == pytest.approx(8.0, rel=0.2)  # exponential(8 s) before a job


def test_flaky_job_found_with_the_true_rate(store: Store, history: History) -> None:
    found = ci.flaky(store, ALL).rows
    top = found[0]
    assert (top["workflow"], top["job"]) == ("ci", "integration")
    assert top["flaky_commits"] == history.truth["flaky_commits"]
    assert top["flake_rate"] == pytest.approx(history.truth["flake_rate"])
    # unit fails for real on big changes, and stays failed on the re-run: not flaky
    assert ("ci", "unit") not in {(r["workflow"], r["job"]) for r in found}


def test_weekly_trend_shows_the_planted_slowdown(store: Store, history: History) -> None:
    table, trends = ci.aggregates(store, ALL, "weekly", "job")
    assert {r["period"][:10] for r in table.rows} >= {"2024-01-01", "2024-02-19"}
    by_job = {(r["workflow"], r["job"]): r for r in trends.rows}
    slope = by_job[("ci", "build")]["p50_trend_per_week"]
    # +8 % of the first week's time per week is ~5-6 % of the eight weeks' mean
    assert 0.04 < slope < 0.08
    assert abs(by_job[("ci", "lint")]["p50_trend_per_week"]) < 0.02
    daily, _ = ci.aggregates(store, ALL, "daily", "run")
    assert len({r["period"] for r in daily.rows}) == 7 * HistoryConfig().weeks


def test_rules_fire_where_planted(store: Store, history: History) -> None:
    findings = ci.rules(store, ALL).items
    broken_day = f"2024-02-{history.truth['broken_day'] - 30:02d}"  # day 40 = 10 February
    low = [f for f in findings if f.rule is ci.Rule.LOW_SUCCESS]
    assert [(f.workflow, f.job, f.at[:10]) for f in low] == [("docs", "deploy-docs", broken_day)]
    streaks = [f for f in findings if f.rule is ci.Rule.STREAK and f.job == "deploy-docs"]
    assert [(f.at[:10], f.value) for f in streaks] == [(broken_day, 5.0)]
    slow = {(f.job, f.at[:10]) for f in findings if f.rule is ci.Rule.SLOW and f.workflow == "docs"}
    assert slow == {("build-docs", broken_day)}
    assert not [f for f in findings if f.job in ("lint", "build")]


def test_critical_path_of_a_run(store: Store) -> None:
    path = ci.run_critical_path(store, ALL, workflow="ci")
    ops = [s.operation for s in path.segments]
    assert path.root.operation == "RUN ci"
    assert {"ruff", "pytest", "tests", "docker-build"} <= set(ops)  # a full run: four jobs
    assert sum(s.share for s in path.segments) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no finished CI run"):
        ci.run_critical_path(store, ALL, run_id="nope")


def _cli(db: Path, *args: str) -> Any:
    if "ci" not in main.commands:
        ci_commands.register(main)
    result = CliRunner().invoke(main, ["--db", str(db), "ci", *args])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.output) if "json" in args else result.output


def test_cli_commands(ci_db: Path) -> None:
    flaky = _cli(ci_db, "flaky", "--format", "json")
    assert flaky["rows"][0]["job"] == "integration"
    since = str((START_NS // 10**9) + 35 * DAY_S)
    rules = _cli(ci_db, "rules", "--format", "json", "--since", since)
    assert {r["rule"] for r in rules["rows"]} >= {"low_success_rate", "consecutive_failures"}
    text = _cli(ci_db, "weekly", "--level", "job")
    assert "CI weekly aggregates" in text and "trend" in text
    assert "critical path" in _cli(ci_db, "critical-path", "--workflow", "docs")
    summary = _cli(ci_db, "summary", "--level", "step", "--format", "json")
    assert {r["step"] for r in summary["rows"]} >= {"pytest", "sphinx"}


def test_flaky_job_of_the_live_simulator_stream(tmp_path: Path) -> None:
    """sim/ci.py's jobs carry no commit of their own: they inherit their run's."""
    from telltale.sim import SimConfig, simulate

    result = simulate(SimConfig(duration_s=1800))
    with Store(tmp_path / "s.duckdb") as store:
        store.commit(result.decoded(), source="sim", fmt="simulator", content_hash="sim")
        found = ci.flaky(store, ALL, min_commits=1).rows
    truth = result.truth["ci"]
    assert [(r["job"], r["flaky_commits"], r["commits"]) for r in found] == [
        ("integration-tests", truth["flaky_retry_passes"], truth["flaky_attempts"])]
