"""Commands: rootcause (rank services by how likely they started an incident) and
`eval nezha` (score that ranking on a Nezha-layout fault directory)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from telltale.analyses.eval_nezha import FaultResult, evaluate_nezha
from telltale.analyses.rootcause import rank_root_causes
from telltale.analyses.scope import Scope
from telltale.commands.common import (
    FORMATS,
    analysis_options,
    emit,
    open_store,
    scope_of,
    settings_of,
    user_errors,
)
from telltale.window import WindowError, parse_duration, parse_time


@click.command("rootcause")
@analysis_options
@click.option("--baseline-since", help="Baseline start (default: as long a window right before "
              "the incident).")
@click.option("--baseline-until", help="Baseline end (default: the incident's start).")
@click.option("--metric-history", default="1h", show_default=True,
              help="How much gauge history before the incident metrics are compared with.")
@click.option("--min-spans", default=3, show_default=True,
              help="Fewest spans per operation and window for its shifts to count.")
@click.option("--log-errors/--no-log-errors", default=True, show_default=True,
              help="Count a span with a linked error-severity log as failed (shown apart).")
@click.pass_context
@user_errors
def rootcause_cmd(ctx: click.Context, fmt: str, since: str | None, until: str | None,
                  last: str | None, services: tuple[str, ...], operations: tuple[str, ...],
                  baseline_since: str | None, baseline_until: str | None, metric_history: str,
                  min_spans: int, log_errors: bool) -> None:
    """Rank services by how likely each is the incident's root cause, with the evidence.

    The incident is --since/--until (or --last); each service's own spans are compared with a
    baseline window: its self time, how its operations call others (minus its callees' own
    change), its origin error rate, error logs, and its gauges against their recent history.
    """
    clock = settings_of(ctx).clock
    scope = scope_of(ctx, since, until, last, services, operations)
    if scope.since is None:
        raise WindowError("give the incident window with --since (or --last)")
    incident = scope.with_window(scope.since, scope.until if scope.until is not None else clock())
    assert incident.until is not None and incident.since is not None
    now = clock()
    b_until = parse_time(baseline_until, now) if baseline_until else incident.since
    b_since = (parse_time(baseline_since, now) if baseline_since
               else b_until - (incident.until - incident.since))
    if b_since >= b_until:
        raise WindowError("the baseline window is empty (--baseline-since after --baseline-until)")
    baseline = Scope(b_since, b_until, incident.services, incident.operations)
    with open_store(ctx) as store:
        ranking = rank_root_causes(store, incident, baseline, min_spans=min_spans,
                                   metric_history_ns=parse_duration(metric_history),
                                   log_errors=log_errors)
    emit(ranking.to_rows(), fmt)


@click.group("eval")
def eval_group() -> None:
    """Score telltale's analyses on external data with ground truth."""


@eval_group.command("nezha")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--window", default="3m", show_default=True,
              help="Incident length after each fault's inject_time.")
@click.option("--baseline", "baseline_len", default="5m", show_default=True,
              help="Without a baseline/ folder: how long before each fault to compare with.")
@user_errors
def eval_nezha_cmd(directory: Path, fmt: str, window: str, baseline_len: str) -> None:
    """AS@1/3/5 of root-cause ranking on a Nezha-layout directory (fault_list.json, trace/,
    metric/, log/, optional baseline/): the share of faults whose injected service ranks in
    the top k. Builds a temporary store; the directory is only read."""
    def progress(result: FaultResult) -> None:
        if fmt == "table":
            click.echo(f"  {result.fault.service}: rank {result.rank}", err=True)

    evaluation = evaluate_nezha(directory, window_ns=parse_duration(window),
                                baseline_ns=parse_duration(baseline_len),
                                on_fault=progress if sys.stderr.isatty() else None)
    emit(evaluation.to_rows(), fmt, limit=None)


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(rootcause_cmd)
    main.add_command(eval_group)
