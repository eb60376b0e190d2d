"""Commands: profile (latency and self time per operation, or one span's rank) and heatmap
(latency over time per operation, and which handlers are hot when)."""

from __future__ import annotations

import click
from rich.console import Console

from telltale.analyses.heatmap import HeatmapBy, heatmap, with_slowest
from telltale.analyses.profile import ProfileBy, SortKey, profile, span_rank
from telltale.commands.common import analysis_options, emit, open_store, scope_of, user_errors
from telltale.render import rows as render_rows
from telltale.render.heatmap import print_grids
from telltale.window import parse_duration


@click.command("profile")
@click.option("--by", type=click.Choice([b.value for b in ProfileBy]), default="operation",
              show_default=True, help="One row per service, or per service and operation.")
@click.option("--sort", type=click.Choice([s.value for s in SortKey]), default="p95",
              show_default=True, help="Largest first: p95 latency, span count, errors, self p95.")
@click.option("--self-time", is_flag=True,
              help="Also the time spans spend in themselves, not in their children (slower: "
                   "joins every span to its children).")
@click.option("--span", "span_ref", metavar="TRACE_ID:SPAN_ID",
              help="Instead: how slow this span is for its operation (its percentile rank).")
@analysis_options
@click.pass_context
@user_errors
def profile_command(ctx: click.Context, by: str, sort: str, self_time: bool, span_ref: str | None,
                    fmt: str, since: str | None, until: str | None, last: str | None,
                    services: tuple[str, ...], operations: tuple[str, ...]) -> None:
    """Per service or operation: spans, throughput, error rate, p50/p90/p95/p99/max latency and
    (--self-time) self time, over the window."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        if span_ref is not None:
            trace_id, sep, span_id = span_ref.partition(":")
            if not sep or not trace_id or not span_id:
                raise click.BadParameter("use TRACE_ID:SPAN_ID", param_hint="--span")
            emit(span_rank(store, trace_id, span_id, scope).to_rows(), fmt)
            return
        result = profile(store, scope, by=by, sort=sort, self_time=self_time)
    emit(result.to_rows(), fmt)


@click.command("heatmap")
@click.option("--by", type=click.Choice([b.value for b in HeatmapBy]), default="operation",
              show_default=True)
@click.option("--bucket", help="Time bucket width, e.g. 1m (default: about 60 columns).")
@click.option("--top", type=int, default=12, show_default=True,
              help="Grids to draw (busiest first), and rows in the hot lists.")
@click.option("--hot-by", type=click.Choice(["p95", "ratio"]), default="p95", show_default=True,
              help="Rank slow moments by p95, or by p95 against the operation's usual p95.")
@click.option("--min-count", type=int, default=20, show_default=True,
              help="Spans a time bucket needs to be ranked by its p95.")
@analysis_options
@click.pass_context
@user_errors
def heatmap_command(ctx: click.Context, by: str, bucket: str | None, top: int, hot_by: str,
                    min_count: int, fmt: str, since: str | None, until: str | None,
                    last: str | None, services: tuple[str, ...],
                    operations: tuple[str, ...]) -> None:
    """Latency heatmap per operation (or service): span counts by time × latency bucket
    (powers of two from 1 ms), with the busiest and the slowest moments.

    JSON and CSV give the cells in long format (service, operation, time_start, latency_lo_ms,
    latency_hi_ms, count); JSON adds the bucket edges and the hot lists."""
    scope = scope_of(ctx, since, until, last, services, operations)
    width = parse_duration(bucket) if bucket else None
    with open_store(ctx) as store:
        heat = heatmap(store, scope, by=by, width_ns=width, top=top)
        heat = with_slowest(store, scope, heat, rank=hot_by, min_count=min_count, top=top)
    if fmt == "csv":
        emit(heat.to_rows(), fmt)
    elif fmt == "json":
        emit([heat.to_rows(), *heat.hot_rows()], fmt)
    else:
        console = Console()
        print_grids(heat, console, top)
        for rows in heat.hot_rows():
            render_rows.print_table(rows, console)


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(profile_command)
    main.add_command(heatmap_command)
