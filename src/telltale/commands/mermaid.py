"""Commands: `mermaid trace|timeline|phases|graph|flow` — Mermaid diagram text on stdout, ready for
a Markdown file, a GitHub comment or mermaid.live. Also `--format mermaid` for `deps` and
`flows check` (see `with_mermaid_format`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from telltale.analyses.critical_path import critical_path
from telltale.analyses.deps import DepsLevel, dependencies
from telltale.analyses.flow_spec import load_spec
from telltale.analyses.flows import check_flows
from telltale.analyses.phases import DEFAULT_BUCKETS, phases
from telltale.analyses.trace_detail import TraceDetail, load_trace
from telltale.commands.common import FORMATS, open_store, scope_of, user_errors
from telltale.render.mermaid_flow import MAX_PATHS, flows_diagram
from telltale.render.mermaid_graph import MAX_NODES, dependency_flowchart
from telltale.render.mermaid_trace import (
    LIMIT,
    MAX_MESSAGES,
    MAX_TASKS,
    gantt_diagram,
    phases_gantt,
    sequence_diagram,
)
from telltale.store import Store

MERMAID = "mermaid"
F = TypeVar("F", bound=Callable[..., Any])


def scope_options(fn: F) -> F:
    """The analysis options without --format: these commands always print Mermaid."""
    options = [
        click.option("--since", help="Start: ISO-8601, epoch, or a duration ago (30m)."),
        click.option("--until", help="End: ISO-8601, epoch, or a duration ago."),
        click.option("--last", help="Window ending now (or --until): e.g. 1h."),
        click.option("--service", "services", multiple=True, help="Only this service (repeatable)."),
        click.option("--operation", "operations", multiple=True,
                     help="Only this operation / span name (repeatable)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def with_mermaid_format(command: click.Command) -> click.Command:
    """Let a command built with `analysis_options` take `--format mermaid` too."""
    for param in command.params:
        if param.name == "fmt" and isinstance(param, click.Option):
            param.type = click.Choice([*FORMATS, MERMAID])
    return command


@click.group(MERMAID)
def mermaid_group() -> None:
    """Mermaid diagrams: a trace's calls and timeline, a window's phases, the dependency
    graph, expected flows."""


def _trace(store: Store, trace_id: str) -> TraceDetail:
    trace = load_trace(store, trace_id)
    if trace is None:
        raise click.ClickException(f"no spans stored for trace {trace_id.strip().lower()}")
    return trace


def _critical(store: Store, trace_id: str, wanted: bool) -> frozenset[str]:
    if not wanted:
        return frozenset()
    return frozenset(seg.span_id for seg in critical_path(store, trace_id).segments)


@mermaid_group.command("trace")
@click.argument("trace_id")
@click.option("--max-messages", type=click.IntRange(min=2, max=LIMIT), default=MAX_MESSAGES,
              show_default=True, help="Arrows drawn at most; a note counts the spans left out.")
@click.option("--critical/--no-critical", default=True, show_default=True,
              help="Mark the critical path's spans with ★.")
@click.pass_context
@user_errors
def trace_command(ctx: click.Context, trace_id: str, max_messages: int, critical: bool) -> None:
    """A sequenceDiagram of TRACE_ID: calls between services with durations, errors as
    crosses with their status message, same-service spans as self-calls."""
    with open_store(ctx) as store:
        trace = _trace(store, trace_id)
        marks = _critical(store, trace_id, critical)
    click.echo(sequence_diagram(trace, max_messages=max_messages, critical=marks), nl=False)


@mermaid_group.command("timeline")
@click.argument("trace_id")
@click.option("--max-tasks", type=click.IntRange(min=1, max=LIMIT), default=MAX_TASKS, show_default=True,
              help="Bars drawn at most (the earliest-starting spans).")
@click.option("--critical/--no-critical", default=True, show_default=True,
              help="Draw the critical path's spans as active bars.")
@click.pass_context
@user_errors
def timeline_command(ctx: click.Context, trace_id: str, max_tasks: int, critical: bool) -> None:
    """A gantt timeline of TRACE_ID: a section per service, a bar per span at its offset
    from the trace's start (ms); errors in red."""
    with open_store(ctx) as store:
        trace = _trace(store, trace_id)
        marks = _critical(store, trace_id, critical)
    click.echo(gantt_diagram(trace, max_tasks=max_tasks, critical=marks), nl=False)


@mermaid_group.command("phases")
@click.option("--buckets", type=click.IntRange(min=1, max=10_000), default=DEFAULT_BUCKETS,
              show_default=True, help="Time buckets the window is cut into; a phase is a run "
              "of consecutive buckets with root spans of one operation.")
@click.option("--max-tasks", type=click.IntRange(min=1, max=LIMIT), default=MAX_TASKS, show_default=True,
              help="Bars drawn at most.")
@scope_options
@click.pass_context
@user_errors
def phases_command(ctx: click.Context, buckets: int, max_tasks: int, since: str | None,
                   until: str | None, last: str | None, services: tuple[str, ...],
                   operations: tuple[str, ...]) -> None:
    """A gantt of a window: when each root operation was running (a bar per phase, with its
    traces and errors; phases with errors in red)."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        result = phases(store, scope, buckets=buckets)
    click.echo(phases_gantt(result, max_tasks=max_tasks), nl=False)


@mermaid_group.command("graph")
@click.option("--level", type=click.Choice([lv.value for lv in DepsLevel]), default="service",
              show_default=True, help="Nodes are services, or operations grouped by service.")
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Only the N busiest edges (by calls).")
@click.option("--max-nodes", type=click.IntRange(min=2), default=MAX_NODES, show_default=True,
              help="Drop the quietest edges until at most this many nodes remain.")
@click.option("--direction", type=click.Choice(["LR", "TB"]), default="LR", show_default=True)
@scope_options
@click.pass_context
@user_errors
def graph_command(ctx: click.Context, level: str, top: int | None, max_nodes: int,
                  direction: str, since: str | None, until: str | None,
                  last: str | None, services: tuple[str, ...],
                  operations: tuple[str, ...]) -> None:
    """A flowchart of the dependency graph (as `telltale deps`): edges labelled with calls,
    error % and the callee's p95; error-heavy edges red; peers dashed, shaped by kind."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        graph = dependencies(store, scope, level=level)
    click.echo(dependency_flowchart(graph, top=top, max_nodes=max_nodes, direction=direction),
               nl=False)


@mermaid_group.command("flow")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--flow", "names", multiple=True, help="Only this flow of SPEC (repeatable).")
@click.option("--paths", type=click.IntRange(min=0), default=MAX_PATHS, show_default=True,
              help="Most frequent observed paths drawn per flow.")
@scope_options
@click.pass_context
@user_errors
def flow_command(ctx: click.Context, spec: Path, names: tuple[str, ...], paths: int,
                 since: str | None, until: str | None, last: str | None,
                 services: tuple[str, ...], operations: tuple[str, ...]) -> None:
    """Expected vs observed paths of each flow in SPEC (as `telltale flows check`), with
    every rule's verdict. Always exits 0: use `flows check` as the CI gate."""
    specs = load_spec(spec)
    if names:
        unknown = sorted(set(names) - {s.name for s in specs})
        if unknown:
            raise click.ClickException(f"{spec}: no flow named {', '.join(map(repr, unknown))}")
        specs = [s for s in specs if s.name in names]
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        report = check_flows(store, scope, specs, paths=max(paths, 1))
    click.echo(flows_diagram(report, max_paths=paths), nl=False)


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(mermaid_group)
