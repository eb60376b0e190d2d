"""`telltale simulate`: write a simulated system's telemetry (and its ground truth) to files,
or commit it straight into the store."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console

from telltale.settings import Settings
from telltale.sim import SimConfig, simulate, write_files
from telltale.store import Store
from telltale.window import parse_time


@click.command("simulate")
@click.argument("out_dir", type=click.Path(file_okay=False), required=False)
@click.option("--minutes", type=float, default=30.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--start", help="Start time (ISO-8601 or epoch); default a fixed instant, "
              "so the same seed gives the same files.")
@click.option("--rate", type=float, default=None, help="Shop requests per second (scale).")
@click.option("--format", "fmt", type=click.Choice(["json", "proto", "both"]), default="json",
              show_default=True, help="OTLP encoding of the written files.")
@click.option("--no-incidents", is_flag=True, help="Simulate a healthy system.")
@click.option("--into-store", is_flag=True,
              help="Commit straight into the store (--db) instead of writing files.")
@click.pass_context
def command(ctx: click.Context, out_dir: str | None, minutes: float, seed: int,
            start: str | None, rate: float | None, fmt: str, no_incidents: bool,
            into_store: bool) -> None:
    """Simulate services, an agent orchestrator, CI runs, hosts and logs with known incidents.

    Writes OTLP files, agents.jsonl and a torn traces file to OUT_DIR/telemetry/ and the ground
    truth to OUT_DIR/truth.json, or with --into-store commits everything into the store.
    """
    settings: Settings = ctx.obj["settings"]
    console = Console(stderr=True)
    if not into_store and out_dir is None:
        raise click.UsageError("give OUT_DIR, or --into-store")
    defaults = SimConfig()
    try:
        start_ns = parse_time(start, settings.clock()) if start else defaults.start_ns
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    config = SimConfig(seed=seed, start_ns=start_ns, duration_s=minutes * 60,
                       requests_per_s=defaults.requests_per_s if rate is None else rate,
                       incidents=not no_incidents)
    t0 = time.perf_counter()
    result = simulate(config)
    elapsed = time.perf_counter() - t0
    n = result.spans.num_rows
    console.print(f"simulated {n:,} spans, {result.logs.num_rows:,} log records, "
                  f"{sum(t.num_rows for t in result.metrics.values()):,} metric points in "
                  f"{elapsed:.2f}s ({n / elapsed:,.0f} spans/s)")
    if into_store:
        with Store(settings.db_path, settings=settings) as store:
            report = store.commit(result.decoded(), source=f"simulator seed {seed}",
                                  fmt="simulator", content_hash=f"sim:{seed}:{config}")
        console.print(f"stored {report.total_stored:,} records in {settings.db_path}"
                      + (" (already there)" if report.already_ingested else ""))
        return
    root = Path(str(out_dir))
    written = write_files(result, root / "telemetry", root / "truth.json",
                          json=fmt in {"json", "both"}, proto=fmt in {"proto", "both"})
    for path in written:
        console.print(f"  {path}  ({path.stat().st_size / 1e6:.1f} MB)")
    console.print(f"ground truth: {root / 'truth.json'}; ingest with: "
                  f"telltale ingest {root / 'telemetry'}")
