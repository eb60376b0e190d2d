"""Commands: compare (BubbleUp: what sets a selection of spans apart) and regressions (what
changed between two windows, versions or attribute values)."""

from __future__ import annotations

import click

from telltale.analyses.compare import Selection, compare
from telltale.analyses.regression import (
    AttributeSplit,
    Split,
    Thresholds,
    VersionSplit,
    WindowSplit,
    regressions,
    split_at,
)
from telltale.analyses.scope import Scope
from telltale.commands.common import analysis_options, emit, open_store, scope_of, settings_of, user_errors
from telltale.window import parse_duration, parse_time


def _where(pairs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--where")
        out.append((key.strip(), value))
    return tuple(out)


@click.command("compare")
@analysis_options
@click.option("--errors", is_flag=True, help="Select failed spans.")
@click.option("--origin-errors", is_flag=True,
              help="Select failed spans none of whose children failed (where failures start).")
@click.option("--slower-than", help="Select spans longer than this, e.g. 500ms.")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Select spans whose span/resource attribute (or ServiceName, SpanName, "
              "SpanKind, StatusCode, ScopeName) has this value (repeatable: all must hold).")
@click.option("--top", default=25, show_default=True, help="How many attribute values to list.")
@click.option("--max-distinct-fraction", default=0.1, show_default=True,
              help="Leave out keys with more distinct values than this share of the spans "
              "carrying them (ids, timestamps)...")
@click.option("--min-distinct", default=20, show_default=True,
              help="...unless they have at most this many distinct values.")
@click.option("--log-errors/--no-log-errors", default=True, show_default=True,
              help="Count a span with a linked error-severity log as failed (shown apart).")
@click.pass_context
@user_errors
def compare_cmd(ctx: click.Context, fmt: str, since: str | None, until: str | None,
                last: str | None, services: tuple[str, ...], operations: tuple[str, ...],
                errors: bool, origin_errors: bool, slower_than: str | None,
                where: tuple[str, ...], top: int, max_distinct_fraction: float,
                min_distinct: int, log_errors: bool) -> None:
    """BubbleUp: attribute values over-represented in a selection vs the rest of the spans.

    The baseline is every other span in the same window and service/operation filters.
    """
    scope = scope_of(ctx, since, until, last, services, operations)
    selection = Selection(errors, origin_errors,
                          parse_duration(slower_than) if slower_than else None, _where(where))
    with open_store(ctx) as store:
        result = compare(store, scope, selection, limit=top,
                         max_distinct_fraction=max_distinct_fraction, min_distinct=min_distinct,
                         log_errors=log_errors)
    emit(result.to_rows(), fmt)


@click.command("regressions")
@analysis_options
@click.option("--split-at", "split_at_", help="Compare before this time (baseline) with from it on.")
@click.option("--baseline-since", help="Baseline window start (current: --since/--until).")
@click.option("--baseline-until", help="Baseline window end; the current window then starts "
              "there unless --since says otherwise.")
@click.option("--by-version", is_flag=False, flag_value="*", default=None, metavar="[SERVICE]",
              help="Each service's latest service.version against its previous one "
              "(optionally of one service).")
@click.option("--attr", help="Compare two values of this resource/span attribute (--a, --b).")
@click.option("--a", "value_a", help="Baseline value of --attr.")
@click.option("--b", "value_b", help="Current value of --attr.")
@click.option("--all-spans", is_flag=True,
              help="Test every operation, not only entry spans (server, consumer, roots).")
@click.option("--min-samples", default=30, show_default=True,
              help="Spans needed on each side to test an operation.")
@click.option("--alpha", default=0.01, show_default=True, help="Significance level on q-values.")
@click.option("--max-samples", default=20_000, show_default=True,
              help="Durations sampled per operation and side for the rank test.")
@click.option("--significant", "only_significant", is_flag=True,
              help="List only significant changes.")
@click.pass_context
@user_errors
def regressions_cmd(ctx: click.Context, fmt: str, since: str | None, until: str | None,
                    last: str | None, services: tuple[str, ...], operations: tuple[str, ...],
                    split_at_: str | None, baseline_since: str | None, baseline_until: str | None,
                    by_version: str | None, attr: str | None, value_a: str | None,
                    value_b: str | None, all_spans: bool, min_samples: int, alpha: float,
                    max_samples: int, only_significant: bool) -> None:
    """Per operation: latency (Mann–Whitney, p95 shift) and error-rate changes between two
    windows, versions or attribute values, with Benjamini–Hochberg control.

    Choose one comparison: --split-at, --baseline-since/--baseline-until, --by-version or
    --attr KEY --a VALUE --b VALUE.
    """
    scope = scope_of(ctx, since, until, last, services, operations)
    split = _split(ctx, scope, split_at_, baseline_since, baseline_until, by_version, attr,
                   value_a, value_b, since is not None or last is not None)
    with open_store(ctx) as store:
        report = regressions(store, split, entry_only=not all_spans, cap=max_samples,
                             thresholds=Thresholds(alpha=alpha, min_samples=min_samples))
    emit(report.to_rows(significant_only=only_significant), fmt)


def _split(ctx: click.Context, scope: Scope, at: str | None, baseline_since: str | None,
           baseline_until: str | None, by_version: str | None, attr: str | None,
           value_a: str | None, value_b: str | None, current_start_given: bool) -> Split:
    chosen = [at is not None, baseline_since is not None or baseline_until is not None,
              by_version is not None, attr is not None]
    if sum(chosen) != 1:
        raise click.UsageError("choose one comparison: --split-at, --baseline-since/--baseline-until, "
                               "--by-version or --attr")
    now = settings_of(ctx).clock()
    if at is not None:
        return split_at(scope, parse_time(at, now))
    if by_version is not None:
        return VersionSplit(scope if by_version == "*" else Scope(
            scope.since, scope.until, (*scope.services, by_version), scope.operations))
    if attr is not None:
        if value_a is None or value_b is None:
            raise click.UsageError("--attr needs --a (baseline value) and --b (current value)")
        return AttributeSplit(scope, attr, value_a, value_b)
    lo = parse_time(baseline_since, now) if baseline_since else None
    hi = parse_time(baseline_until, now) if baseline_until else None
    current = scope
    if not current_start_given and hi is not None:
        current = scope.with_window(hi, scope.until)  # the current window follows the baseline
    return WindowSplit(scope.with_window(lo, hi), current)


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
    main.add_command(compare_cmd)
    main.add_command(regressions_cmd)
