"""Commands: deps (the dependency graph between services, operations and their peers)."""

from __future__ import annotations

import click

from telltale.analyses.deps import DepsLevel, dependencies
from telltale.commands.common import analysis_options, emit, open_store, scope_of, user_errors
from telltale.commands.mermaid import MERMAID, with_mermaid_format
from telltale.render.mermaid_graph import dependency_flowchart


@with_mermaid_format
@click.command("deps")
@click.option("--level", type=click.Choice([lv.value for lv in DepsLevel]), default="service",
              show_default=True, help="Edges between services, or between operations.")
@analysis_options
@click.pass_context
@user_errors
def deps_command(ctx: click.Context, level: str, fmt: str, since: str | None, until: str | None,
                 last: str | None, services: tuple[str, ...], operations: tuple[str, ...]) -> None:
    """Who calls whom: caller → callee with calls, errors, error % and the callee's p50/p95,
    from parent/child spans across services and consumer links, plus the databases, brokers
    and external APIs seen only from client spans. --service / --operation keep the edges
    touching them; client spans that reach nothing and name no peer are counted in a note.
    --format mermaid prints a flowchart (more options: `telltale mermaid graph`)."""
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        graph = dependencies(store, scope, level=level)
    if fmt == MERMAID:
        click.echo(dependency_flowchart(graph), nl=False)
        return
    emit(graph.to_rows(), fmt, limit=200)


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(deps_command)
