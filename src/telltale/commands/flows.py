"""Commands: `flows check` (expected-flow validation, CI-friendly exit codes) and `coverage`
(which code handlers production traffic exercises)."""

from __future__ import annotations

from pathlib import Path

import click

from telltale.analyses.code_scan import DEFAULT_PATTERNS, Pattern, scan
from telltale.analyses.coverage import coverage
from telltale.analyses.flow_spec import SpecError, load_spec
from telltale.analyses.flows import check_flows
from telltale.commands.common import analysis_options, emit, open_store, scope_of, user_errors
from telltale.commands.mermaid import MERMAID, with_mermaid_format
from telltale.render.mermaid_flow import flows_diagram
from telltale.store import StoreError
from telltale.window import WindowError

EXIT_VIOLATED = 1
EXIT_CANNOT_CHECK = 2


class CannotCheck(click.ClickException):
    """A bad spec, window or store: one line, exit 2, so CI tells it from "flows violated"."""

    exit_code = EXIT_CANNOT_CHECK


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(flows)
    main.add_command(coverage_cmd)


@click.group()
def flows() -> None:
    """Expected flows: check stored traces against a declarative spec (docs/flows.md)."""


@with_mermaid_format
@flows.command("check")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@analysis_options
@click.option("--examples", default=5, show_default=True,
              help="Example trace ids listed per violated rule.")
@click.pass_context
@user_errors
def check(ctx: click.Context, spec: Path, fmt: str, since: str | None, until: str | None,
          last: str | None, services: tuple[str, ...], operations: tuple[str, ...],
          examples: int) -> None:
    """Check the traces whose root matches each flow of SPEC (a TOML file) in the window.

    Exit status: 0 when every flow passes, 1 when any flow is violated, 2 when the check
    cannot run (bad spec, bad window, no store).
    --service/--operation narrow the root spans considered. --format mermaid draws each
    flow's expected vs observed paths (see `telltale mermaid flow`).
    """
    try:
        specs = load_spec(spec)
        scope = scope_of(ctx, since, until, last, services, operations)
        with open_store(ctx) as store:
            report = check_flows(store, scope, specs, examples=examples)
    except (SpecError, WindowError, StoreError) as exc:  # could not check: not "violated"
        raise CannotCheck(str(exc)) from exc
    if fmt == MERMAID:  # the same verdict and exit status, drawn
        click.echo(flows_diagram(report), nl=False)
    else:
        emit(report.to_rows(), fmt, limit=None)
    if report.violated:
        ctx.exit(EXIT_VIOLATED)


@click.command("coverage")
@click.argument("src_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@analysis_options
@click.option("--pattern", "patterns", multiple=True, metavar="GLOB=REGEX",
              help="Find handlers in files matching GLOB (e.g. '*.rb') with REGEX, which has a "
              "named group `route` or `name` (and optionally `method`). Repeatable.")
@click.option("--no-default-patterns", is_flag=True,
              help="Only --pattern regexes for non-Python files (Python is always parsed).")
@click.pass_context
@user_errors
def coverage_cmd(ctx: click.Context, src_dir: Path, fmt: str, since: str | None,
                 until: str | None, last: str | None, services: tuple[str, ...],
                 operations: tuple[str, ...], patterns: tuple[str, ...],
                 no_default_patterns: bool) -> None:
    """Which handlers in SRC_DIR production exercised in the window, and which spans match
    no handler.

    Python is parsed (functions, methods, route decorators, path()/Route() tables); other
    languages use regexes (defaults for Express, Go net/http and gin/echo, Spring).
    """
    chosen = [] if no_default_patterns else list(DEFAULT_PATTERNS)
    chosen += [Pattern.parse(p) for p in patterns]
    code = scan(src_dir, chosen)
    scope = scope_of(ctx, since, until, last, services, operations)
    with open_store(ctx) as store:
        report = coverage(store, scope, code)
    emit(report.to_rows(), fmt, limit=None)
