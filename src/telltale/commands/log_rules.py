"""Commands: `logs extract` (spans / metric points from logs), `logs links` (how well logs join
their traces) and `logs trace` (one trace's logs, attached to their spans)."""

from __future__ import annotations

from pathlib import Path

import click

from telltale.analyses.log_extract import extract
from telltale.analyses.log_extract_spec import load_rules
from telltale.analyses.log_links import link_quality, logs_of_trace, trace_logs_rows
from telltale.commands.common import (
    FORMATS,
    emit,
    open_store,
    scope_of,
    settings_of,
    user_errors,
    window_options,
)
from telltale.store import Store, StoreLockedError


@click.command("extract")
@click.argument("rules", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@window_options
@click.option("--service", "services", multiple=True, help="Only logs of this service (repeatable).")
@click.option("--dry-run", is_flag=True, help="Count what would be derived; write nothing.")
@click.pass_context
@user_errors
def extract_cmd(ctx: click.Context, rules: Path, fmt: str, since: str | None, until: str | None,
                last: str | None, services: tuple[str, ...], dry_run: bool) -> None:
    """Derive spans (durations) and gauge points (values) from logs matching the RULES file
    (TOML; see docs/log-extract.md). A derived span ends at its log's time. Re-running stores
    nothing twice; each rule's output is its own ingest batch (source extract:<rule>)."""
    parsed = load_rules(rules)  # a bad rule fails before the store is opened
    scope = scope_of(ctx, since, until, last, services)
    settings = settings_of(ctx)
    try:
        store = open_store(ctx) if dry_run else Store(settings.db_path, settings=settings)
    except StoreLockedError as exc:
        # Not forwarded to a running server: extraction writes, and the server's own
        # write path (the receiver) takes requests, not commands.
        raise click.ClickException(f"{exc} (logs extract writes to the store)") from exc
    with store:
        result = extract(store, parsed, scope, dry_run=dry_run)
    emit(result.to_rows(), fmt, limit=None)


@click.command("links")
@window_options
@click.option("--service", "services", multiple=True, help="Only logs of this service (repeatable).")
@click.pass_context
@user_errors
def links_cmd(ctx: click.Context, fmt: str, since: str | None, until: str | None,
              last: str | None, services: tuple[str, ...]) -> None:
    """How well logs link to traces, per service: records carrying a trace id, and the share
    whose trace and span are stored."""
    scope = scope_of(ctx, since, until, last, services)
    with open_store(ctx) as store:
        emit(link_quality(store, scope).to_rows(), fmt, limit=None)


@click.command("trace")
@click.argument("trace_id")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
@user_errors
def trace_cmd(ctx: click.Context, trace_id: str, fmt: str) -> None:
    """One trace's logs in time order, each with the span it attaches to."""
    with open_store(ctx) as store:
        emit(trace_logs_rows(trace_id, logs_of_trace(store, trace_id)), fmt, limit=None)


def register(main: click.Group) -> None:
    """Add these to the `logs` group (created by commands/logs.py; made here if absent)."""
    group = main.commands.get("logs")
    if not isinstance(group, click.Group):
        group = click.Group("logs", help="Log records: extraction rules, trace links.")
        main.add_command(group)
    for command in (extract_cmd, links_cmd, trace_cmd):
        group.add_command(command)
