"""Command: report (one self-contained HTML file telling the story of a time window)."""

from __future__ import annotations

import time

import click
import orjson

from telltale.commands.common import open_store, scope_of, user_errors, window_options
from telltale.report.collect import ReportData
from telltale.report.html import write_report


def summary(data: ReportData) -> dict[str, object]:
    """What the one-line summary (and --format json) says about a written report."""
    score = data.quality.total.score if data.quality is not None else None
    return {"spans": data.spans, "errors": data.errors,
            "services": len(data.services.rows) if data.services is not None else 0,
            "quality_score": score,
            "findings": [f.key for f in data.findings if f.rows is not None],
            "problems": data.problems}


@click.command("report")
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the report (one self-contained HTML file).")
@window_options
@click.pass_context
@user_errors
def report_command(ctx: click.Context, html_path: str, fmt: str, since: str | None,
                   until: str | None, last: str | None) -> None:
    """Write an HTML report of the window: overview and quality score, services, latency
    heatmap, dependency graph, slowest traces with waterfalls, and the analyses' findings.
    No scripts and nothing from the network: it opens offline."""
    scope = scope_of(ctx, since, until, last)
    started = time.perf_counter()
    with open_store(ctx) as store:
        data = write_report(store, html_path, since=scope.since, until=scope.until)
    info = summary(data)
    if fmt == "json":
        click.echo(orjson.dumps({"path": html_path, **info}, option=orjson.OPT_INDENT_2
                                | orjson.OPT_SORT_KEYS).decode())
        return
    score = data.quality.total.score if data.quality is not None else None
    found = sum(f.rows is not None for f in data.findings)
    click.echo(html_path)
    click.echo(f"{data.spans:,} spans, {data.errors:,} errors, {info['services']} services, "
               f"quality score {'–' if score is None else f'{100 * score:.1f}%'}, "
               f"{found} of {len(data.findings)} findings sections with results"
               + (f", {len(data.problems)} parts not computed" if data.problems else "")
               + f" ({time.perf_counter() - started:.1f}s)")


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(report_command)
