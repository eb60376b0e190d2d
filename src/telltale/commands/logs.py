"""Commands: `logs templates|new|changed|params|search|reindex` (log analytics over the templates
assigned at ingest) and `eval loghub` (template-mining grouping accuracy and throughput)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from telltale.analyses import log_analytics as la
from telltale.analyses.eval_loghub import evaluate_loghub
from telltale.analyses.log_templates import reindex
from telltale.commands.common import (
    FORMATS,
    emit,
    open_store,
    scope_of,
    settings_of,
    user_errors,
    window_options,
)
from telltale.commands.rootcause import eval_group
from telltale.store import Store, StoreLockedError
from telltale.window import parse_duration, parse_time


@click.command("loghub")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--drain3/--no-drain3", "with_drain3", default=True, show_default=True,
              help="Also run drain3 (when installed) on the same lines for comparison.")
@user_errors
def eval_loghub_cmd(directory: Path, fmt: str, with_drain3: bool) -> None:
    """Grouping accuracy and lines/s of the template miner on each <Name>_2k.log in DIRECTORY
    (Loghub layout: the log plus <Name>_2k.log_structured*.csv), beside Drain's published GA
    and drain3 measured in the same run. Messages come from the CSV's Content column; its
    EventId is used only for scoring. The directory is only read."""
    evaluation = evaluate_loghub(directory, with_drain3=with_drain3)
    if fmt == "json":
        click.echo(json.dumps(evaluation.to_dict(), indent=2))
    else:
        emit(evaluation.to_rows(), fmt, limit=None)


_service = click.option("--service", "services", multiple=True,
                        help="Only records of this service (repeatable).")


def _baseline_options(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--baseline-since", help="Baseline start (default: the window's length before)."),
        click.option("--baseline-until", help="Baseline end (default: the window's start)."),
        click.option("--baseline-last", help="Baseline of this length ending at the window's start."),
        click.option("--alpha", type=float, default=0.05, show_default=True,
                     help="Benjamini–Hochberg false discovery rate for rate changes."),
        click.option("--min-fold", type=float, default=2.0, show_default=True,
                     help="Smallest rate ratio (either way) reported as a change."),
        click.option("--min-count", type=int, default=10, show_default=True,
                     help="Records in both windows together needed to test a template."),
    ]):
        fn = option(fn)
    return fn


def _trend(ctx: click.Context, since: str | None, until: str | None, last: str | None,
           services: tuple[str, ...], baseline_since: str | None, baseline_until: str | None,
           baseline_last: str | None, alpha: float, min_fold: float,
           min_count: int) -> la.TemplateTrend:
    if baseline_last and baseline_since:
        raise ValueError("--baseline-last and --baseline-since are exclusive")
    scope = scope_of(ctx, since, until, last, services)
    now = settings_of(ctx).clock()
    with open_store(ctx) as store:
        return la.trend(store, scope.since, scope.until,
                        baseline_since=parse_time(baseline_since, now) if baseline_since else None,
                        baseline_until=parse_time(baseline_until, now) if baseline_until else None,
                        baseline_length=parse_duration(baseline_last) if baseline_last else None,
                        services=scope.services, alpha=alpha, min_fold=min_fold,
                        min_count=min_count)


@click.group("logs")
def logs_group() -> None:
    """Log records: templates, new and changed events, parameters, search."""


@logs_group.command("templates")
@click.option("--top", type=int, default=50, show_default=True, help="Most frequent templates.")
@_service
@window_options
@click.pass_context
@user_errors
def templates_command(ctx: click.Context, top: int, services: tuple[str, ...], fmt: str,
                      since: str | None, until: str | None, last: str | None) -> None:
    """Log templates by record count: share, errors (severity >= ERROR), first/last seen, services."""
    scope = scope_of(ctx, since, until, last, services)
    with open_store(ctx) as store:
        result = la.template_counts(store, scope.since, scope.until, scope.services, top)
    emit(result.to_rows(), fmt, limit=None)


@logs_group.command("new")
@_baseline_options
@_service
@window_options
@click.pass_context
@user_errors
def new_command(ctx: click.Context, baseline_since: str | None, baseline_until: str | None,
                baseline_last: str | None, alpha: float, min_fold: float, min_count: int,
                services: tuple[str, ...], fmt: str, since: str | None, until: str | None,
                last: str | None) -> None:
    """Templates with records in the window (--since/--last) and none in the baseline window."""
    result = _trend(ctx, since, until, last, services, baseline_since, baseline_until,
                    baseline_last, alpha, min_fold, min_count)
    emit(result.new_rows(), fmt, limit=None)


@logs_group.command("changed")
@_baseline_options
@_service
@window_options
@click.pass_context
@user_errors
def changed_command(ctx: click.Context, baseline_since: str | None, baseline_until: str | None,
                    baseline_last: str | None, alpha: float, min_fold: float, min_count: int,
                    services: tuple[str, ...], fmt: str, since: str | None, until: str | None,
                    last: str | None) -> None:
    """Templates whose rate changed significantly between the baseline window and the window
    (exact conditional Poisson test, Benjamini–Hochberg adjusted, and at least --min-fold)."""
    result = _trend(ctx, since, until, last, services, baseline_since, baseline_until,
                    baseline_last, alpha, min_fold, min_count)
    emit(result.changed_rows(), fmt, limit=None)


@logs_group.command("params")
@click.argument("template_id", type=int)
@click.option("--top", type=int, default=10, show_default=True, help="Values per position.")
@_service
@window_options
@click.pass_context
@user_errors
def params_command(ctx: click.Context, template_id: int, top: int, services: tuple[str, ...],
                   fmt: str, since: str | None, until: str | None, last: str | None) -> None:
    """The most frequent values of each <*> slot of a template (see `logs templates` for ids)."""
    scope = scope_of(ctx, since, until, last, services)
    with open_store(ctx) as store:
        result = la.template_params(store, template_id, scope.since, scope.until,
                                    scope.services, top)
    emit(result.to_rows(), fmt, limit=None)


@logs_group.command("search")
@click.argument("text", required=False)
@click.option("--template", "template_id", type=int, help="Only records of this template id.")
@click.option("--severity", help="At least this severity: error, warn, info... or 1-24.")
@click.option("--trace-id", help="Only records of this trace.")
@click.option("--limit", type=int, default=100, show_default=True)
@_service
@window_options
@click.pass_context
@user_errors
def search_command(ctx: click.Context, text: str | None, template_id: int | None,
                   severity: str | None, trace_id: str | None, limit: int,
                   services: tuple[str, ...], fmt: str, since: str | None, until: str | None,
                   last: str | None) -> None:
    """Log records whose body contains TEXT (case-insensitive) and match every filter, newest first."""
    scope = scope_of(ctx, since, until, last, services)
    with open_store(ctx) as store:
        result = la.search_logs(store, text, template_id=template_id,
                                min_severity=la.severity_number(severity) if severity else None,
                                trace_id=trace_id, since=scope.since, until=scope.until,
                                services=scope.services, limit=limit)
    emit(result.to_rows(), fmt, limit=None)


@logs_group.command("reindex")
@click.option("--all", "all_records", is_flag=True,
              help="Re-assign every record (ids kept; parameters re-extracted against the"
                   " templates' current slots), not only records without a template.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
@user_errors
def reindex_command(ctx: click.Context, all_records: bool, fmt: str) -> None:
    """Give stored log records their template ids and parameters (stores written before
    templates were assigned at ingest). Writes to the store: stop `telltale serve` first."""
    settings = settings_of(ctx)
    try:
        store = Store(settings.db_path, settings=settings)
    except StoreLockedError as exc:  # never forwarded to a server: it writes
        raise click.ClickException(str(exc)) from exc
    with store:
        result = reindex(store, all_records=all_records)
    emit(result.to_rows(), fmt, limit=None)


def register(main: click.Group) -> None:
    """Add the `logs` commands (to the group another module made, if any) and `loghub` to the
    `eval` group (defined with `eval nezha` in commands/rootcause.py)."""
    logs = main.commands.get("logs")
    if isinstance(logs, click.Group):
        for command in logs_group.commands.values():
            logs.add_command(command)
    else:
        main.add_command(logs_group)
    group = main.commands.get("eval")
    if not isinstance(group, click.Group):
        group = eval_group
        main.add_command(group)
    group.add_command(eval_loghub_cmd)
