"""What every command shares: error handling, settings, the analysis options and output."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from telltale.analyses.scope import Scope
from telltale.normalize.detect import DetectionError
from telltale.render import rows as render_rows
from telltale.render.rows import Rows
from telltale.serve.remote import WRITERS, find_server
from telltale.settings import Settings
from telltale.sources.files import SourceError
from telltale.store import Store, StoreError, StoreLockedError
from telltale.window import WindowError, resolve

F = TypeVar("F", bound=Callable[..., Any])
_USER_ERRORS = (SourceError, WindowError, StoreLockedError, StoreError, DetectionError,
                ValueError, OSError)
FORMATS = ["table", "json", "csv"]


def settings_of(ctx: click.Context) -> Settings:
    s: Settings = ctx.find_root().obj["settings"]
    return s


def user_errors(fn: F) -> F:
    """Turn expected failures into one clear line (exit 1), never a traceback.

    A store held by a running `telltale serve` is not a failure: the command is run by that
    server instead (see serve/remote.py)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreLockedError as exc:
            ctx = click.get_current_context()
            server = find_server(settings_of(ctx).db_path)
            if server is None or ctx.command.name in WRITERS:
                raise click.ClickException(str(exc)) from exc
            code, output = server.run_cli(_absolute_paths(ctx, ctx.find_root().obj["argv"]))
            click.echo(output, nl=False)
            ctx.exit(code)
        except _USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from exc
    return wrapper  # type: ignore[return-value]


def _absolute_paths(ctx: click.Context, argv: list[str]) -> list[str]:
    """The server runs a forwarded command in its own directory: file arguments given
    relative to ours (`report --html out.html`, a flow spec) are made absolute first."""
    swap: dict[str, str] = {}
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if not isinstance(param.type, click.Path) or value is None:
            continue
        for v in value if isinstance(value, tuple | list) else [value]:
            if str(v) and not os.path.isabs(str(v)):
                swap[str(v)] = os.path.abspath(str(v))
    out = []
    for arg in argv:
        name, eq, val = arg.partition("=")
        if arg in swap:
            out.append(swap[arg])
        elif eq and name.startswith("--") and val in swap:
            out.append(f"{name}={swap[val]}")
        else:
            out.append(arg)
    return out


def window_options(fn: F) -> F:
    """--format, --since/--until/--last."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                     show_default=True),
        click.option("--since", help="Start: ISO-8601, epoch, or a duration ago (30m)."),
        click.option("--until", help="End: ISO-8601, epoch, or a duration ago."),
        click.option("--last", help="Window ending now (or --until): e.g. 1h."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def analysis_options(fn: F) -> F:
    """The window options, plus --service and --operation (repeatable)."""
    fn = click.option("--operation", "operations", multiple=True,
                      help="Only this operation / span name (repeatable).")(fn)
    fn = click.option("--service", "services", multiple=True,
                      help="Only this service (repeatable).")(fn)
    return window_options(fn)


def scope_of(ctx: click.Context, since: str | None, until: str | None, last: str | None,
             services: tuple[str, ...] = (), operations: tuple[str, ...] = ()) -> Scope:
    lo, hi = resolve(since, until, last, settings_of(ctx).clock)
    return Scope(lo, hi, tuple(services), tuple(operations))


def open_store(ctx: click.Context) -> Store:
    settings = settings_of(ctx)
    return Store(settings.db_path, settings=settings, read_only=True)


def emit(result: Rows | list[Rows], fmt: str, limit: int | None = 50) -> None:
    """Print a result in the chosen format (a list: several tables, one JSON array)."""
    results = result if isinstance(result, list) else [result]
    if fmt == "json":
        click.echo(render_rows.to_json(result))
        return
    if fmt == "csv":
        for r in results:
            click.echo(render_rows.to_csv(r), nl=False)
        return
    console = Console()
    for r in results:
        render_rows.print_table(r, console, limit)
