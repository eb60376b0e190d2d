"""CI analytics over CI/CD-convention spans: durations, success, aggregates, flaky jobs, rules.

Works on anything imported as CI runs (GitHub Actions, the generic CI JSON lines, the
simulator). The SQL is in store/ci_sql.py; this module shapes typed results. Rule findings are
plain data (rule, subject, when, value, threshold) so the alerting loop can consume them later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np

from telltale.analyses.critical_path import CriticalPath, critical_path
from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, ci_sql

DAY_US = 86_400 * 10**6
PERIODS = {"daily": DAY_US, "weekly": 7 * DAY_US}
LEVELS = ("run", "job", "step")


def _ns_iso(ns: int) -> str:
    return f"{datetime.fromtimestamp(ns // 10**9, UTC):%Y-%m-%dT%H:%M:%S}Z"


@dataclass
class CiTable:
    """A CI result that is one table: typed rows kept as dicts in column order."""

    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def to_rows(self) -> Rows:
        return Rows(self.title, self.columns, self.rows, list(self.notes))


def summary(store: Store, scope: Scope, level: str = "job") -> CiTable:
    """Duration percentiles (seconds), success rate and mean queue time per workflow/job/step."""
    levels = list(LEVELS) if level == "all" else [level]
    cols = ["level", "workflow", "job", "step", "runs", "success_rate", "p50_s", "p90_s", "p95_s",
            "max_s", "queue_mean_s"]
    rows = [dict(zip(cols, r, strict=True)) for r in ci_sql.stats(store.con, scope, levels)]
    notes = [] if rows else ["no finished CI runs in this window (import GitHub Actions JSON or "
                             "CI JSON lines first)"]
    return CiTable(f"CI {level} summary", cols, rows, notes)


def _slope_per_period(values: list[float]) -> float | None:
    """Least-squares change per period relative to the mean (0.08 = +8 % a period)."""
    if len(values) < 3:
        return None
    y = np.asarray(values, dtype=float)
    slope = float(np.polyfit(np.arange(len(y), dtype=float), y, 1)[0])
    return slope / float(y.mean()) if y.mean() else None


def aggregates(store: Store, scope: Scope, period: str = "daily", level: str = "run"
               ) -> tuple[CiTable, CiTable]:
    """Per-period aggregates (the "processed → aggregated" stage) and the trend of each series."""
    cols = ["period", "workflow", "job", "runs", "success_rate", "p50_s", "p95_s", "queue_mean_s",
            "run_mean_s", "p50_change"]
    raw = ci_sql.periods(store.con, scope, PERIODS[period], level)
    rows = [dict(zip(cols, (str(r[0]), *r[1:]), strict=True)) for r in raw]
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault((row["workflow"], row["job"]), []).append(row)
    trend_cols = ["workflow", "job", "periods", "p50_trend_per_" + {"daily": "day", "weekly": "week"}[period],
                  "success_trend", "queue_share"]
    trends = []
    for (workflow, job), items in sorted(series.items()):
        queue = sum(float(i["queue_mean_s"] or 0) * i["runs"] for i in items)
        run = sum(float(i["run_mean_s"] or 0) * i["runs"] for i in items)
        trends.append(dict(zip(trend_cols, [
            workflow, job, len(items), _slope_per_period([float(i["p50_s"]) for i in items]),
            _slope_per_period([float(i["success_rate"]) for i in items]),
            queue / (queue + run) if queue + run else None], strict=True)))
    return (CiTable(f"CI {period} aggregates ({level}s)", cols, rows),
            CiTable(f"CI trends ({level}s; relative change per period, least squares)",
                    trend_cols, trends,
                    ["queue_share: time waiting for a runner over waiting + running"]))


def flaky(store: Store, scope: Scope, min_commits: int = 2) -> CiTable:
    """Jobs that both passed and failed on the same commit in the window.

    flake_rate = commits with both outcomes / commits the job ran on."""
    cols = ["workflow", "job", "commits", "flaky_commits", "flake_rate", "runs", "flaky_failures"]
    rows = [dict(zip(cols, r, strict=True)) for r in ci_sql.flaky(store.con, scope, min_commits)]
    return CiTable("flaky CI jobs (passed and failed on the same commit)", cols, rows,
                   [] if rows else ["no job passed and failed on the same commit"])


class Rule(StrEnum):
    LOW_SUCCESS = "low_success_rate"
    SLOW = "duration_above_rolling_mean"
    STREAK = "consecutive_failures"


@dataclass(frozen=True)
class RuleParams:
    success_threshold: float = 0.5
    window: str = "daily"
    min_runs: int = 3
    k: float = 2.0
    rolling: int = 20
    streak: int = 3
    branch: str = "main"  # rules watch the default branch; "" for all branches


@dataclass(frozen=True)
class Finding:
    rule: Rule
    workflow: str
    job: str
    at: str  # ISO time (UTC) of the period start or of the run
    value: float
    threshold: float
    detail: str


@dataclass
class Findings:
    params: RuleParams
    items: list[Finding]

    def to_rows(self) -> Rows:
        cols = ["rule", "workflow", "job", "at", "value", "threshold", "detail"]
        p = self.params
        return Rows("CI rule findings", cols,
                    [{"rule": f.rule.value, "workflow": f.workflow, "job": f.job, "at": f.at,
                      "value": f.value, "threshold": f.threshold, "detail": f.detail}
                     for f in self.items],
                    [f"rules on branch {p.branch or '(all)'}: success < {p.success_threshold:.0%} "
                     f"per {p.window} window (≥ {p.min_runs} runs); duration > {p.k:g} × mean of "
                     f"the {p.rolling} runs before; ≥ {p.streak} failures in a row"])


def rules(store: Store, scope: Scope, params: RuleParams = RuleParams()) -> Findings:
    con, p, items = store.con, params, []
    for period, workflow, job, n, rate in ci_sql.low_success(
            con, scope, PERIODS[p.window], p.success_threshold, p.min_runs, p.branch):
        items.append(Finding(Rule.LOW_SUCCESS, workflow, job, f"{period:%Y-%m-%dT%H:%M:%S}Z",
                             float(rate), p.success_threshold, f"{round(rate * n)}/{n} passed"))
    for ts, workflow, job, run_id, dur, mean in ci_sql.slow_jobs(con, scope, p.k, p.rolling,
                                                                  p.branch):
        items.append(Finding(Rule.SLOW, workflow, job, _ns_iso(ts), float(dur), p.k * float(mean),
                             f"run {run_id}: {dur:.0f}s vs mean {mean:.0f}s ({dur / mean:.1f}x)"))
    for workflow, job, first, _last, n, run_a, run_b in ci_sql.failure_streaks(con, scope,
                                                                                p.streak, p.branch):
        items.append(Finding(Rule.STREAK, workflow, job, _ns_iso(first), float(n), float(p.streak),
                             f"{n} failures in a row, runs {run_a}…{run_b}"))
    items.sort(key=lambda f: (f.at, f.rule.value, f.workflow, f.job))
    return Findings(params, items)


def run_critical_path(store: Store, scope: Scope, workflow: str = "", run_id: str = ""
                      ) -> CriticalPath:
    """The critical path of one run (its latest attempt), else of the slowest run in scope."""
    trace = ci_sql.run_trace(store.con, scope, workflow, run_id)
    if trace is None:
        raise ValueError("no finished CI run matches" + (f" run id {run_id}" if run_id else ""))
    return critical_path(store, trace)
