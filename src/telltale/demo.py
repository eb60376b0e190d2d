"""`telltale demo`: simulate half an hour of a realistic system, ingest it, tell its story.

Everything goes through the same code paths a user's data takes: the simulator writes OTLP
JSON-lines files, an agent-events log and a torn file; `ingest` detects, validates, stores and
quarantines; the quality report and the overview read the store back. The agent-events log
holds the orchestrator's worker spans, which its OTLP traces lack: the two complete each other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from telltale.analyses.ci import flaky as ci_flaky
from telltale.analyses.overview import overview
from telltale.analyses.patterns import n_plus_one
from telltale.analyses.quality import GroupBy, quality
from telltale.analyses.regression import VersionSplit, regressions
from telltale.analyses.scope import Scope
from telltale.ingest import ingest_paths
from telltale.model import QualityFlag
from telltale.render import ingest as render_ingest
from telltale.render import quality as render_quality
from telltale.report.html import write_report
from telltale.settings import Settings
from telltale.sim import SimConfig, simulate, write_files
from telltale.store import Store

HALF_HOUR_NS = 1800 * 1_000_000_000


def _incident_line(inc: dict[str, Any]) -> str:
    where = inc.get("service") or inc.get("host") or inc.get("file") or inc.get("job") or ""
    return f"{inc['kind']} ({inc['name']}){f' in {where}' if where else ''}"


def run(settings: Settings, out_dir: Path, minutes: float, seed: int, console: Console) -> None:
    started = time.perf_counter()
    # Aligned to the half hour so a re-run within it re-creates identical files (and the
    # idempotent ingest stores nothing twice); recent, so `--last 1h` windows find it.
    end = settings.clock() // HALF_HOUR_NS * HALF_HOUR_NS
    config = SimConfig(seed=seed, start_ns=end - int(minutes * 60e9), duration_s=minutes * 60)
    console.rule("[b]telltale demo")
    with console.status("simulating..."):
        result = simulate(config)
        files = write_files(result, out_dir, out_dir / "truth.json")
    console.print(
        f"simulated {minutes:g} minutes (seed {seed}): {result.spans.num_rows:,} spans, "
        f"{result.logs.num_rows:,} log records, "
        f"{sum(t.num_rows for t in result.metrics.values()):,} metric points, "
        f"{len(result.agent_events):,} agent events → {out_dir}/ "
        f"[dim]({time.perf_counter() - started:.1f}s)[/dim]")

    t0 = time.perf_counter()
    with Store(settings.db_path, settings=settings) as store:
        with console.status("ingesting..."):
            # Auto-detection, as for a user's files (the agent log is recognised by its fields).
            results = ingest_paths(store, [str(path) for path in files])
        render_ingest.print_table(results, console)
        console.print(f"[dim]ingested in {time.perf_counter() - t0:.1f}s → {settings.db_path}[/dim]")
        report = quality(store, by=GroupBy.SOURCE)
        render_quality.print_table(report, console)
        by_service = quality(store, by=GroupBy.SERVICE)
        view = overview(store, since=config.start_ns, until=end + 60 * 1_000_000_000)
        versions = regressions(store, VersionSplit(Scope()))
        repeats = n_plus_one(store)
        flaky_jobs = ci_flaky(store, Scope(), min_commits=1)
        report_path = out_dir / "report.html"
        with console.status("writing the HTML report..."):
            write_report(store, report_path)

    console.rule("[b]what telltale found")
    t = Table(title="services (slowest p95 first)")
    for col in ("service", "spans", "errors", "error rate", "p50 ms", "p95 ms", "orphans"):
        t.add_column(col, justify="left" if col == "service" else "right")
    orphans = {g.key: g.spans.flags[QualityFlag.ORPHAN] for g in by_service.groups}
    for s in sorted(view.services, key=lambda s: -s.p95_ms):
        n_orphans = orphans.get(s.service, 0)
        t.add_row(s.service, f"{s.spans:,}", f"{s.errors:,}", f"{s.error_rate:.1%}",
                  f"{s.p50_ms:.1f}", f"{s.p95_ms:.1f}",
                  f"[yellow]{n_orphans:,}[/yellow]" if n_orphans else "0")
    console.print(t)
    findings = []
    q_total = sum(report.total.quarantined.values())
    if q_total:
        findings.append(f"{q_total:,} broken trace records quarantined with their line numbers "
                        f"(see telltale_quarantine); nothing was dropped silently")
    worst = max(by_service.groups, key=lambda g: g.spans.flags[QualityFlag.ORPHAN], default=None)
    if worst is not None and worst.spans.flags[QualityFlag.ORPHAN]:
        findings.append(f"{worst.key} emits orphan spans "
                        f"({worst.spans.flags[QualityFlag.ORPHAN]:,}; parent ids never seen)")
    for h in view.hotspots[:1]:
        findings.append(f"errors in {h.service} '{h.operation}' concentrate on {h.key}={h.value}:"
                        f" {h.errors:,} of {h.spans:,} such spans fail ({h.error_rate:.1%})")
    for c in versions.significant[:1]:
        ratio = c.p95_ratio
        findings.append(f"{c.service} '{c.operation}' got slower from {c.labels[0]} to "
                        f"{c.labels[1]}: p95 {(c.p95_ns[0] or 0) / 1e6:.0f} → "
                        f"{(c.p95_ns[1] or 0) / 1e6:.0f} ms"
                        + (f" (×{ratio:.1f}, Mann–Whitney q < 0.01)" if ratio else ""))
    for r in repeats.findings[:1]:
        findings.append(f"N+1: {r.parent_service} '{r.parent_operation}' calls {r.service} "
                        f"'{r.operation}' up to {r.max_repeats}× per request "
                        f"({r.occurrences:,} requests, e.g. trace {r.examples[0]})")
    for row in flaky_jobs.rows[:1]:
        findings.append(f"CI job {row['workflow']}/{row['job']} is flaky: it passed and failed "
                        f"on the same commit ({row['flaky_commits']} of {row['commits']} commits)")
    for span in view.open_spans[:3]:
        who = span.attributes.get("agent.worker") or span.attributes.get("agent.task") or span.name
        findings.append(f"{span.service} '{span.name}' ({who}) started at "
                        f"{render_quality.iso(span.start_ns)} and never finished (open span)")
    for line in findings:
        console.print(f"• {line}")
    console.print("[dim]injected by the simulator (truth.json): " + "; ".join(
        _incident_line(i) for i in result.truth.get("incidents", [])) + "[/dim]")
    console.print(f"\nHTML report (one file, no network needed): [b]{report_path}[/b]")
    console.print(f"dashboard, JSON API and Jaeger API: [b]telltale --db {settings.db_path} serve"
                  f"[/b], then open [b]http://127.0.0.1:8080/[/b]")
    console.print(f"done in {time.perf_counter() - started:.1f}s. Next: "
                  f"[b]telltale --db {settings.db_path} quality --by service[/b]")


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="telltale-demo",
              show_default=True, help="Where the simulated files are written.")
@click.option("--minutes", type=float, default=30.0, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_context
def command(ctx: click.Context, out: str, minutes: float, seed: int) -> None:
    """Simulate a system with known incidents, ingest it, and report what telltale finds."""
    settings: Settings = ctx.obj["settings"]
    run(settings, Path(out), minutes, seed, Console())
