"""Commands on whole traces: critical-path, trace-stats, diff, and patterns (shapes, N+1,
retries, new shapes)."""

from __future__ import annotations

import click

from telltale.analyses import critical_path as cp
from telltale.analyses import patterns as pt
from telltale.analyses.trace_diff import TraceGroup, trace_diff
from telltale.commands.common import analysis_options, emit, open_store, scope_of, settings_of, user_errors
from telltale.model import SpanKind
from telltale.window import parse_time


@click.command("critical-path")
@click.argument("trace_id", required=False)
@analysis_options
@click.pass_context
@user_errors
def critical_path_command(ctx: click.Context, trace_id: str | None, fmt: str, since: str | None,
                          until: str | None, last: str | None, services: tuple[str, ...],
                          operations: tuple[str, ...]) -> None:
    """The critical path of TRACE_ID: which spans' own time the trace's latency is made of.

    Without TRACE_ID: the slowest trace whose root the window and filters select
    (--operation names the root operation)."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        result = cp.critical_path(store, trace_id or cp.slowest_trace(store, scope))
    emit(result.to_rows(), fmt, limit=None)


@click.command("trace-stats")
@click.argument("trace_id", required=False)
@analysis_options
@click.pass_context
@user_errors
def trace_stats_command(ctx: click.Context, trace_id: str | None, fmt: str, since: str | None,
                        until: str | None, last: str | None, services: tuple[str, ...],
                        operations: tuple[str, ...]) -> None:
    """Span count, depth, fan-out, services, errors and self time per operation of TRACE_ID,
    or of every trace whose root the window and filters select."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        result = cp.trace_stats(store, scope, trace_id)
    emit(result.to_rows(), fmt)


@click.command("diff")
@click.argument("traces", nargs=-1)
@click.option("--root-op", help="Compare two groups of traces with this root operation.")
@click.option("--a-since", help="Start of group A (default: B's length before B).")
@click.option("--a-until", help="End of group A (default: B's start).")
@click.option("--b-since", help="Start of group B (default: --since / --last).")
@click.option("--b-until", help="End of group B (default: --until, or now).")
@click.option("--min-count-delta", type=float, default=0.5, show_default=True,
              help="Groups: smallest change in an operation's count per trace to report.")
@analysis_options
@click.pass_context
@user_errors
def diff_command(ctx: click.Context, traces: tuple[str, ...], root_op: str | None,
                 a_since: str | None, a_until: str | None, b_since: str | None,
                 b_until: str | None, min_count_delta: float, fmt: str, since: str | None,
                 until: str | None, last: str | None, services: tuple[str, ...],
                 operations: tuple[str, ...]) -> None:
    """Compare two traces (TRACE_A TRACE_B) or two groups of traces of one root operation
    (--root-op with --a-*/--b-* windows, or --since/--last as B and the period before as A).

    Nodes are aligned by their path of service: operation from the root; --service and
    --operation keep only those nodes."""
    scope = scope_of(ctx, since, until, last, services, operations)
    if traces:
        if len(traces) != 2 or root_op:
            raise click.UsageError("give two trace ids, or --root-op with windows")
        a, b = TraceGroup(trace_id=traces[0]), TraceGroup(trace_id=traces[1])
    else:
        if not root_op:
            raise click.UsageError("give two trace ids, or --root-op with windows")
        now = settings_of(ctx).clock()

        def at(text: str | None, default: int | None) -> int | None:
            return parse_time(text, now) if text else default

        bs, bu = at(b_since, scope.since), at(b_until, scope.until if scope.until else now)
        if bs is None or bu is None:
            raise click.UsageError("group B needs a start: --b-since, --since or --last")
        au = at(a_until, bs)
        as_ = at(a_since, None if au is None else au - (bu - bs))
        a = TraceGroup(root_op=root_op, since=as_, until=au)
        b = TraceGroup(root_op=root_op, since=bs, until=bu)
    with open_store(ctx) as store:
        result = trace_diff(store, a, b, scope, min_count_delta)
    emit(result.to_rows(), fmt)


@click.group("patterns")
def patterns_group() -> None:
    """Structural patterns across traces: shapes, n-plus-one, retries, new-shapes."""


@patterns_group.command("shapes")
@click.option("--top", type=int, default=200, show_default=True, help="Most frequent shapes.")
@analysis_options
@click.pass_context
@user_errors
def shapes_command(ctx: click.Context, top: int, fmt: str, since: str | None, until: str | None,
                   last: str | None, services: tuple[str, ...],
                   operations: tuple[str, ...]) -> None:
    """Frequent trace shapes per root operation: count, share and root latency percentiles.

    --operation selects root operations; --service, traces that touch the service."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        result = pt.shapes(store, scope, top)
    emit(result.to_rows(), fmt)


@patterns_group.command("new-shapes")
@click.option("--baseline-since", help="Baseline start (default: the window's length before).")
@click.option("--baseline-until", help="Baseline end (default: the window's start).")
@click.option("--top", type=int, default=200, show_default=True)
@analysis_options
@click.pass_context
@user_errors
def new_shapes_command(ctx: click.Context, baseline_since: str | None,
                       baseline_until: str | None, top: int, fmt: str, since: str | None,
                       until: str | None, last: str | None, services: tuple[str, ...],
                       operations: tuple[str, ...]) -> None:
    """Shapes in the window (--since/--last) that no trace of the baseline window has."""
    scope = scope_of(ctx, since, until, last, services, operations)
    now = settings_of(ctx).clock()
    with open_store(ctx) as store:
        result = pt.new_shapes(store, scope,
                               parse_time(baseline_since, now) if baseline_since else None,
                               parse_time(baseline_until, now) if baseline_until else None, top)
    emit(result.to_rows(), fmt)


@patterns_group.command("n-plus-one")
@click.option("--min-repeats", type=int, default=5, show_default=True,
              help="Repetitions of one call under one parent that make an N+1.")
@click.option("--any-kind", is_flag=True, help="Count every span kind, not only client calls.")
@analysis_options
@click.pass_context
@user_errors
def n_plus_one_command(ctx: click.Context, min_repeats: int, any_kind: bool, fmt: str,
                       since: str | None, until: str | None, last: str | None,
                       services: tuple[str, ...], operations: tuple[str, ...]) -> None:
    """The same call (service + operation) repeated under one parent span: one query per item.

    --service / --operation select the repeated calls."""
    scope = scope_of(ctx, since, until, last, services, operations)
    kinds = () if any_kind else (SpanKind.CLIENT,)
    with open_store(ctx) as store:
        result = pt.n_plus_one(store, scope, min_repeats, kinds)
    emit(result.to_rows(), fmt)


@patterns_group.command("retries")
@analysis_options
@click.pass_context
@user_errors
def retries_command(ctx: click.Context, fmt: str, since: str | None, until: str | None,
                    last: str | None, services: tuple[str, ...],
                    operations: tuple[str, ...]) -> None:
    """Retry loops: consecutive calls to one operation under one parent after failures."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        result = pt.retries(store, scope)
    emit(result.to_rows(), fmt)


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    for command in (critical_path_command, trace_stats_command, diff_command, patterns_group):
        main.add_command(command)
