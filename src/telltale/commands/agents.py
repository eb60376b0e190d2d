"""Commands: `telltale agents summary|models|trends|worst` (agent analytics, docs/recorder.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from telltale.analyses import agents
from telltale.commands.common import analysis_options, emit, open_store, scope_of, user_errors
from telltale.store.agents_sql import DIMENSIONS


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(agents_group)


def _by(value: str) -> tuple[str, ...]:
    dims = tuple(d.strip() for d in value.split(",") if d.strip())
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown or not dims:
        raise click.BadParameter(f"choose from {', '.join(DIMENSIONS)} (comma-separated)")
    return dims


def _common(fn: Any) -> Any:
    fn = click.option("--unit", type=click.Choice(["auto", "agent", "call", "all"]), default="auto",
                      show_default=True,
                      help="Agent spans (with a role), LLM calls (a model, no role), or both; "
                           "auto: agents if any.")(fn)
    fn = click.option("--prices", type=click.Path(dir_okay=False, path_type=Path),
                      help="Price table (TOML/JSON: model = {input, output} USD per 1M tokens).")(fn)
    return analysis_options(fn)


@click.group("agents")
def agents_group() -> None:
    """Agent analytics: success, failures, latency, tokens and cost per model, role, task."""


@agents_group.command("summary")
@click.option("--by", "by", default="model,role", show_default=True,
              help=f"Group by these, comma-separated: {', '.join(DIMENSIONS)}.")
@_common
@click.pass_context
@user_errors
def summary(ctx: click.Context, by: str, unit: str, prices: Path | None, fmt: str,
            since: str | None, until: str | None, last: str | None, services: tuple[str, ...],
            operations: tuple[str, ...]) -> None:
    """Counts, failure rate (95 % interval), error classes, latency percentiles, tokens, cost."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        report = agents.summarise(store, scope, _by(by), unit=unit,
                                  prices=agents.load_prices(prices))
    emit(report.to_rows(), fmt, None)


@agents_group.command("models")
@_common
@click.pass_context
@user_errors
def models(ctx: click.Context, unit: str, prices: Path | None, fmt: str, since: str | None,
           until: str | None, last: str | None, services: tuple[str, ...],
           operations: tuple[str, ...]) -> None:
    """Per model (and provider)."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        report = agents.summarise(store, scope, ("model", "provider"), unit=unit,
                                  prices=agents.load_prices(prices), title="agent models")
    emit(report.to_rows(), fmt, None)


@agents_group.command("worst")
@click.option("--by", "by", default="model,role", show_default=True,
              help=f"Combinations of these, comma-separated: {', '.join(DIMENSIONS)}.")
@click.option("--min-count", default=1, show_default=True, help="Ignore smaller groups.")
@click.option("--top", default=10, show_default=True, help="How many to list (0: all).")
@click.option("--prior-weight", default=10.0, show_default=True,
              help="Spans' worth of the overall failure rate each group is shrunk towards.")
@_common
@click.pass_context
@user_errors
def worst(ctx: click.Context, by: str, min_count: int, top: int, prior_weight: float, unit: str,
          prices: Path | None,
          fmt: str, since: str | None, until: str | None, last: str | None,
          services: tuple[str, ...], operations: tuple[str, ...]) -> None:
    """Worst combinations: ranked by a lower bound of the failure rate shrunk towards the
    overall rate, so 2 failures in 2 do not outrank 300 in 1000 (shown: the Wilson 95 % interval)."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        report = agents.worst(store, scope, _by(by), unit=unit, min_count=min_count,
                              top=top or None, prior_weight=prior_weight,
                              prices=agents.load_prices(prices))
    emit(report.to_rows(), fmt, None)


@agents_group.command("trends")
@click.option("--by", "by", default="model", show_default=True,
              help=f"Group by these, comma-separated: {', '.join(DIMENSIONS)}.")
@click.option("--bucket", "bucket_s", default=3600, show_default=True, help="Bucket (seconds).")
@click.option("--unit", type=click.Choice(["auto", "agent", "call", "all"]), default="auto",
              show_default=True)
@analysis_options
@click.pass_context
@user_errors
def trends(ctx: click.Context, by: str, bucket_s: int, unit: str, fmt: str, since: str | None,
           until: str | None, last: str | None, services: tuple[str, ...],
           operations: tuple[str, ...]) -> None:
    """Count, failure rate, median latency and tokens per time bucket."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        result = agents.trends(store, scope, _by(by), bucket_s=bucket_s, unit=unit)
    emit(result.to_rows(), fmt, None)
