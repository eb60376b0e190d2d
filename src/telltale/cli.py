"""The `telltale` command: a thin layer over the library (no analysis logic here)."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from telltale import __version__
from telltale.analyses.log_extract import extract
from telltale.analyses.log_extract_spec import load_rules
from telltale.analyses.quality import GroupBy, quality
from telltale.analyses.scope import Scope
from telltale.commands.common import settings_of, user_errors
from telltale.demo import command as demo_command
from telltale.ingest import SourceResult, ingest_sources
from telltale.model import Format, Signal
from telltale.normalize.csv_spans import PRESETS as CSV_PRESETS
from telltale.normalize.events import PRESETS as EVENT_PRESETS
from telltale.normalize.log_follow import FollowError, follow_format
from telltale.normalize.log_follow import follow as follow_log
from telltale.normalize.options import DecodeOptions
from telltale.recorder import ENV_SPOOL, read_status
from telltale.render import ingest as render_ingest
from telltale.render import quality as render_quality
from telltale.render import rows as render_rows
from telltale.serve.receiver import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_QUEUE_BYTES
from telltale.serve.remote import find_server
from telltale.serve.server import ServeOptions
from telltale.serve.server import run as run_server
from telltale.settings import ENV_DB, ENV_TOKEN, Settings
from telltale.sim.cli import command as simulate_command
from telltale.sources.files import FileSource, expand
from telltale.store import Store, StoreLockedError
from telltale.window import parse_duration, resolve

# Each module under telltale/commands/ adds its commands to `main`.
COMMAND_MODULES = ["profile", "graph", "traces", "compare", "flows", "rootcause", "logs", "log_rules",
                   "agents", "ci", "report", "mermaid"]


class _Root(click.Group):
    """Keeps the command line (without --db, which the server has its own of) for forwarding."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.ensure_object(dict)
        ctx.obj.setdefault("argv", _without_db(args))
        return super().parse_args(ctx, args)


def _without_db(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == "--db":
            skip = True
        elif not a.startswith("--db="):
            out.append(a)
    return out


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", type=click.Path(dir_okay=False), envvar=ENV_DB, default=None,
              help=f"Store file (default ./telltale.duckdb, or ${ENV_DB}).")
@click.version_option(__version__, prog_name="telltale")
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """telltale: turn raw telemetry into the story of what your system did."""
    ctx.ensure_object(dict)
    # Inside `serve` (a forwarded command), the server's own store settings are given.
    ctx.obj.setdefault("settings", Settings.from_env(db_path=Path(db) if db else None))


def _load_mapping(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        loaded = orjson.loads(path.read_bytes())
        if not isinstance(loaded, dict):
            raise click.BadParameter("mapping file must hold a JSON object", param_hint="--mapping")
        return loaded
    for presets in (CSV_PRESETS, EVENT_PRESETS):
        if value in presets:
            return dict(presets[value])
    raise click.BadParameter(f"{value!r} is neither a mapping file nor a preset",
                             param_hint="--mapping")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice([f.value for f in Format]), default="auto",
              show_default=True, help="Input format; auto detects and says what it chose.")
@click.option("--mapping", help="Column/field mapping: a JSON file or a preset name "
              "(nezha, agent-spawn). See docs/mapping.md.")
@click.option("--signal", type=click.Choice([s.value for s in Signal]), default=None,
              help="Signal of OTLP protobuf input when the file name does not say.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Summary format.")
@click.option("--pattern", help="Logs: a regex with named groups (time, level, message, logger, "
              "trace_id, span_id, service; others become attributes).")
@click.option("--multiline-start", help="Logs: a regex a record's first line matches (other "
              "lines fold into the record before); 'line' makes every line a record.")
@click.option("--timezone", help="Logs: zone of timestamps that carry none (e.g. Europe/Paris).")
@click.option("--year", type=int, help="Logs: year of timestamps that carry none (syslog).")
@click.option("--follow", is_flag=True, help="Logs or OTLP JSON lines: keep reading one growing "
              "file (rotation-aware, resumes where it stopped) until interrupted.")
@click.option("--extract", "extract_rules", type=click.Path(exists=True, dir_okay=False),
              help="Logs: then derive spans/metric points with these rules (docs/log-extract.md).")
@click.pass_context
@user_errors
def ingest(ctx: click.Context, paths: tuple[str, ...], fmt: str, mapping: str | None,
           signal: str | None, output: str, pattern: str | None, multiline_start: str | None,
           timezone: str | None, year: int | None, follow: bool,
           extract_rules: str | None) -> None:
    """Ingest files, directories, globs or - (stdin); .gz is read transparently.

    Every record is stored or quarantined with a reason; re-ingesting the same content stores
    nothing twice.
    """
    settings = settings_of(ctx)
    console = Console(stderr=output == "json")
    started = time.perf_counter()
    sources = expand(paths)  # a bad path fails here, before the store file is created
    log_options = {"pattern": pattern, "multiline_start": multiline_start,
                   "timezone": timezone, "year": year}
    parsed_mapping = _load_mapping(mapping)
    # Rules are checked before anything is stored: a typo must not leave half a job done.
    rules = load_rules(extract_rules) if extract_rules else None
    if rules is not None and follow:
        raise click.UsageError("--extract runs once after an ingest; with --follow, run "
                               "`telltale logs extract RULES` when needed")
    if any(v is not None for v in log_options.values()):
        parsed_mapping = {**(parsed_mapping or {}),
                          **{k: v for k, v in log_options.items() if v is not None}}
        fmt = Format.LOG_TEXT.value if fmt == Format.AUTO.value else fmt
    if follow:
        _follow(ctx, sources, fmt, parsed_mapping, console)
        return
    total = sum(src.size for src in sources)
    try:
        opened = Store(settings.db_path, settings=settings)
    except StoreLockedError:
        # Held by a running `serve`: send the bytes through it (one writer, same pipeline).
        server = find_server(settings.db_path)
        if server is None:
            raise
        results = [server.ingest(_read(src), source=src.name, fmt=Format(fmt),
                                 mapping=parsed_mapping, signal=Signal(signal) if signal else None)
                   for src in sources]
        _report_ingest(ctx, results, output, console, time.perf_counter() - started, settings)
        if extract_rules:
            code, text = server.run_cli(["logs", "extract", os.path.abspath(extract_rules)])
            console.print(text, end="", markup=False, highlight=False)
            ctx.exit(code)
        return
    with opened as store, Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), DownloadColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task("ingesting", total=total or None)

        def advance(src: Any, size: int) -> None:
            progress.update(task, advance=size, description=f"ingested {src.name}")

        results = ingest_sources(store, sources, fmt=Format(fmt), mapping=parsed_mapping,
                                 signal=Signal(signal) if signal else None, on_progress=advance)
        # Over the whole store: derived records already stored are skipped (idempotent).
        derived = extract(store, rules, Scope()) if rules is not None else None
    _report_ingest(ctx, results, output, console, time.perf_counter() - started, settings)
    if derived is not None:
        render_rows.print_table(derived.to_rows(), console)


def _follow(ctx: click.Context, sources: list[FileSource], fmt: str,
            mapping: dict[str, Any] | None, console: Console) -> None:
    """`ingest --follow`: tail one file (logs or OTLP JSON lines) into the store until Ctrl-C
    (then exit 0)."""
    if len(sources) != 1 or sources[0].name == "-":
        raise click.UsageError("--follow takes exactly one file")
    settings = settings_of(ctx)
    path = sources[0].name
    if fmt == Format.AUTO.value:
        try:
            fmt = follow_format(path)
        except FollowError as exc:
            raise click.UsageError(str(exc)) from exc
    if fmt not in (Format.LOG_TEXT.value, Format.OTLP_JSON.value):
        raise click.UsageError(f"--follow reads plain-text logs or OTLP JSON lines, not {fmt}")
    stopping: list[bool] = []
    # SIGTERM (a service manager) and Ctrl-C both end the loop after the current poll, so
    # what was read is committed and the summary printed.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    console.print(f"following {path} into {settings.db_path} (Ctrl-C to stop)")
    with Store(settings.db_path, settings=settings) as store:
        state = follow_log(store, path, fmt=fmt,
                           options=DecodeOptions(source=path, mapping=mapping or {}),
                           stop=lambda: bool(stopping))
    stored = sum(r.total_stored for r in state.reports)
    quarantined = sum(r.total_quarantined for r in state.reports)
    console.print(f"stored {stored:,} records, quarantined {quarantined:,} "
                  f"({state.rotations} rotations)")


def _read(src: FileSource) -> bytes:
    with src.open() as stream:
        return stream.read()


def _report_ingest(ctx: click.Context, results: list[SourceResult], output: str,
                   console: Console, elapsed: float, settings: Settings) -> None:
    if output == "json":
        click.echo(render_ingest.to_json(results))
    else:
        for r in results:
            if r.format is not None and not (r.report and r.report.already_ingested):
                console.print(f"[dim]{r.source}: {r.format.value} ({r.evidence})[/dim]")
        render_ingest.print_table(results, console)
        stored = sum(r.report.total_stored for r in results if r.report)
        quarantined = sum(r.report.total_quarantined for r in results if r.report)
        console.print(f"stored {stored:,} records, quarantined {quarantined:,}, "
                      f"in {elapsed:.2f}s → {settings.db_path}")
    if any(r.error for r in results):
        ctx.exit(1)


@main.command("quality")
@click.option("--by", type=click.Choice([g.value for g in GroupBy]), default="source",
              show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@click.option("--since", help="Start: ISO-8601, epoch, or a duration ago (30m).")
@click.option("--until", help="End: ISO-8601, epoch, or a duration ago.")
@click.option("--last", help="Window ending now (or --until): e.g. 1h.")
@click.option("--bucket", help="Time bucket width, e.g. 5m (default: about 12 buckets).")
@click.option("--skew-tolerance", default="1us", show_default=True,
              help="How far a child may start before / end after its parent before it counts "
              "as clock skew (hosts' clocks differ: 1ms is typical across machines).")
@click.option("--spool", type=click.Path(file_okay=False), envvar=ENV_SPOOL, default=None,
              help=f"Also report a telltale.recorder spool's own losses (or ${ENV_SPOOL}).")
@click.pass_context
@user_errors
def quality_cmd(ctx: click.Context, by: str, fmt: str, since: str | None, until: str | None,
                last: str | None, bucket: str | None, skew_tolerance: str,
                spool: str | None) -> None:
    """Per source or service: records received, quarantined by reason, flags, quality score.

    With --spool, also what the recorder could not write (disk full, bad values...): events
    lost before they ever reached a file are counted there, never silently."""
    settings = settings_of(ctx)
    lo, hi = resolve(since, until, last, settings.clock)
    with Store(settings.db_path, settings=settings, read_only=True) as store:
        report = quality(store, by=GroupBy(by), since=lo, until=hi,
                         bucket_ns=parse_duration(bucket) if bucket else None,
                         skew_tolerance_ns=parse_duration(skew_tolerance))
    status = read_status(spool) if spool else None
    if fmt == "json":
        click.echo(render_quality.to_json(report, recorder=status))
    elif fmt == "csv":
        click.echo(render_quality.to_csv(report), nl=False)
    else:
        render_quality.print_table(report, Console())
        if status is not None:
            render_quality.print_recorder(spool or "", status, Console())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (loopback unless told otherwise).")
@click.option("--port", default=4318, show_default=True, help="OTLP/HTTP port.")
@click.option("--grpc-port", default=4317, show_default=True, help="OTLP/gRPC port.")
@click.option("--no-grpc", is_flag=True, help="Do not start the gRPC receiver.")
@click.option("--token", envvar=ENV_TOKEN, default=None,
              help=f"Require 'Authorization: Bearer TOKEN' (or ${ENV_TOKEN}).")
@click.option("--max-request-bytes", default=DEFAULT_MAX_REQUEST_BYTES, show_default=True,
              help="Largest request body accepted, after decompression (413 above).")
@click.option("--queue-bytes", default=DEFAULT_QUEUE_BYTES, show_default=True,
              help="Bytes of request bodies held at once; beyond it clients get 429/UNAVAILABLE.")
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also ingest a telltale.recorder spool directory as its segments finish.")
@click.option("--ui-port", default=8080, show_default=True,
              help="Port of the web dashboard, its JSON API and the Jaeger query API.")
@click.option("--no-ui", is_flag=True, help="Do not serve the dashboard.")
@click.option("--no-receiver", is_flag=True,
              help="Serve only the dashboard and APIs, over the store opened read-only.")
@click.pass_context
@user_errors
def serve(ctx: click.Context, host: str, port: int, grpc_port: int, no_grpc: bool,
          token: str | None, max_request_bytes: int, queue_bytes: int,
          spool: Path | None, ui_port: int, no_ui: bool, no_receiver: bool) -> None:
    """Receive OTLP over HTTP (:4318) and gRPC (:4317) into the store, and serve the dashboard
    (:8080), until SIGTERM/SIGINT.

    A record is acknowledged only once committed. Other telltale commands on the same --db
    keep working while this runs: they go through this server.
    """
    if no_receiver and no_ui:
        raise click.UsageError("--no-receiver and --no-ui together leave nothing to serve")
    if no_receiver and spool:
        raise click.UsageError("--spool needs the receiver (it writes); drop --no-receiver")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    options = ServeOptions(host=host, port=port, grpc_port=grpc_port, token=token or None,
                           max_request_bytes=max_request_bytes, queue_bytes=queue_bytes,
                           grpc=not no_grpc, spool=spool, receiver=not no_receiver,
                           ui=not no_ui, ui_port=ui_port)
    ctx.exit(run_server(settings_of(ctx), options))


main.add_command(simulate_command)
main.add_command(demo_command)
for _module in COMMAND_MODULES:
    importlib.import_module(f"telltale.commands.{_module}").register(main)
