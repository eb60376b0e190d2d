"""`telltale ci ...`: CI analytics over imported workflow runs (GitHub Actions, CI JSON lines).

summary | daily | weekly | flaky | rules | critical-path | predict. The window options are the
usual --since/--until/--last; everything else is in analyses/ci.py and analyses/ci_predict.py.
"""

from __future__ import annotations

import click

from telltale.analyses import ci
from telltale.commands.common import (
    emit,
    open_store,
    scope_of,
    settings_of,
    user_errors,
    window_options,
)


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(ci_group)


@click.group("ci")
def ci_group() -> None:
    """CI analytics: durations, success, aggregates, flaky jobs, rules, predictions (docs/ci.md)."""


@ci_group.command("summary")
@click.option("--level", type=click.Choice([*ci.LEVELS, "all"]), default="job", show_default=True)
@window_options
@click.pass_context
@user_errors
def summary_cmd(ctx: click.Context, level: str, fmt: str, since: str | None, until: str | None,
                last: str | None) -> None:
    """Duration percentiles, success rate and queue time per workflow / job / step."""
    with open_store(ctx) as store:
        emit(ci.summary(store, scope_of(ctx, since, until, last), level).to_rows(), fmt, None)


def _periods(period: str) -> click.Command:
    @click.option("--level", type=click.Choice(["run", "job", "step"]), default="run",
                  show_default=True)
    @window_options
    @click.pass_context
    @user_errors
    def command(ctx: click.Context, level: str, fmt: str, since: str | None, until: str | None,
                last: str | None) -> None:
        with open_store(ctx) as store:
            table, trends = ci.aggregates(store, scope_of(ctx, since, until, last), period, level)
        emit([table.to_rows(), trends.to_rows()], fmt, None)
    command.__doc__ = (f"{period.capitalize()} aggregates per workflow (or job / step): runs, "
                       "success rate, p50/p95, queue vs run time, and each series' trend.")
    return click.command(period)(command)


ci_group.add_command(_periods("daily"))
ci_group.add_command(_periods("weekly"))


@ci_group.command("flaky")
@click.option("--min-commits", default=2, show_default=True,
              help="Commits with both outcomes before a job is listed.")
@window_options
@click.pass_context
@user_errors
def flaky_cmd(ctx: click.Context, min_commits: int, fmt: str, since: str | None,
              until: str | None, last: str | None) -> None:
    """Jobs that passed and failed on the same commit in the window, with their flake rate."""
    with open_store(ctx) as store:
        emit(ci.flaky(store, scope_of(ctx, since, until, last), min_commits).to_rows(), fmt)


@ci_group.command("rules")
@click.option("--success-below", default=0.5, show_default=True)
@click.option("--window", type=click.Choice(sorted(ci.PERIODS)), default="daily",
              show_default=True)
@click.option("--min-runs", default=3, show_default=True)
@click.option("-k", "k", default=2.0, show_default=True, help="Duration above k × rolling mean.")
@click.option("--rolling", default=20, show_default=True, help="Runs in the rolling mean.")
@click.option("--streak", default=3, show_default=True, help="Consecutive failures.")
@click.option("--branch", default="main", show_default=True, help='"" for all branches.')
@window_options
@click.pass_context
@user_errors
def rules_cmd(ctx: click.Context, success_below: float, window: str, min_runs: int, k: float,
              rolling: int, streak: int, branch: str, fmt: str, since: str | None,
              until: str | None, last: str | None) -> None:
    """Rule findings: low success rate, duration above k × rolling mean, failure streaks."""
    params = ci.RuleParams(success_below, window, min_runs, k, rolling, streak, branch)
    with open_store(ctx) as store:
        emit(ci.rules(store, scope_of(ctx, since, until, last), params).to_rows(), fmt, None)


@ci_group.command("critical-path")
@click.option("--workflow", default="", help="Slowest run of this workflow.")
@click.option("--run-id", default="", help="This run (its latest attempt).")
@window_options
@click.pass_context
@user_errors
def critical_path_cmd(ctx: click.Context, workflow: str, run_id: str, fmt: str,
                      since: str | None, until: str | None, last: str | None) -> None:
    """Which jobs and steps a run's duration is made of (default: the slowest run)."""
    with open_store(ctx) as store:
        result = ci.run_critical_path(store, scope_of(ctx, since, until, last), workflow, run_id)
    emit(result.to_rows(), fmt)


@ci_group.command("predict")
@click.option("--workflow", help="Workflow of the run to predict (omit with --evaluate).")
@click.option("--branch", default="main", show_default=True)
@click.option("--event", default="push", show_default=True)
@click.option("--files", type=float, help="Files changed, when known.")
@click.option("--lines", type=float, help="Lines changed, when known.")
@click.option("--evaluate", "evaluate_only", is_flag=True,
              help="Only the time-ordered hold-out evaluation against the baselines.")
@click.option("--holdout", default=0.25, show_default=True, help="Latest share of runs held out.")
@window_options
@click.pass_context
@user_errors
def predict_cmd(ctx: click.Context, workflow: str | None, branch: str, event: str,
                files: float | None, lines: float | None, evaluate_only: bool, holdout: float,
                fmt: str, since: str | None, until: str | None, last: str | None) -> None:
    """Predict a run's duration and failure probability, beside the naive baselines."""
    from telltale.analyses import ci_predict  # scikit-learn loads only for this command

    scope = scope_of(ctx, since, until, last)
    with open_store(ctx) as store:
        if evaluate_only:
            emit(ci_predict.evaluate(store, scope, holdout).to_rows(), fmt, None)
            return
        if not workflow:
            raise click.UsageError("--workflow is required (or pass --evaluate)")
        query = ci_predict.RunFeatures(workflow, branch, event, settings_of(ctx).clock(), files,
                                       lines)
        emit(ci_predict.predict(store, scope, query, holdout).to_rows(), fmt, None)
