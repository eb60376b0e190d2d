"""Everything the HTML report shows, gathered from the existing analyses over one window.

Each part is computed on its own and guarded: an empty store, a signal that is absent (no CI
runs, no agents) or an analysis that fails leaves that part saying so, and the rest of the
report is still written. Failures are shown in the report, never swallowed silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from telltale.analyses import agents, ci
from telltale.analyses.critical_path import CriticalPath, critical_path
from telltale.analyses.deps import DependencyGraph, DepsLevel, dependencies
from telltale.analyses.heatmap import Heatmap, HeatmapBy, heatmap, iso
from telltale.analyses.overview import Overview, overview
from telltale.analyses.patterns import n_plus_one, retries
from telltale.analyses.profile import Profile, ProfileBy, SortKey, profile
from telltale.analyses.quality import GroupBy, QualityReport, quality
from telltale.analyses.regression import VersionSplit, regressions
from telltale.analyses.rootcause import rank_root_causes
from telltale.analyses.scope import Scope
from telltale.analyses.trace_detail import TraceDetail, load_trace
from telltale.render.rows import Rows
from telltale.store import Store, report_sql

T = TypeVar("T")
SLOW_TRACES = 5
# An error spike worth a root-cause ranking: this many errors in one bucket, at this many times
# the window's overall error rate.
SPIKE_MIN_ERRORS = 10
SPIKE_RATIO = 2.0


@dataclass(frozen=True)
class Finding:
    """One findings section: a table from an analysis, or why there is none."""

    key: str  # the HTML anchor
    title: str
    lead: str  # one sentence: what was found
    rows: Rows | None = None
    failed: bool = False


@dataclass(frozen=True)
class SlowTrace:
    trace_id: str
    service: str
    operation: str
    duration_ns: int
    detail: TraceDetail
    path: CriticalPath | None

    @property
    def critical(self) -> frozenset[str]:
        return frozenset(s.span_id for s in self.path.segments) if self.path else frozenset()


@dataclass(frozen=True)
class Volume:
    time_edges: list[int]
    spans: list[int]
    errors: list[int]


@dataclass
class ReportData:
    generated_ns: int
    since: int | None  # the window as asked (None: open)
    until: int | None
    first_ns: int | None  # the data found in it
    last_ns: int | None
    overview: Overview | None
    quality: QualityReport | None
    services: Profile | None
    operations: Profile | None
    heat: Heatmap | None
    graph: DependencyGraph | None
    volume: Volume | None
    slow: list[SlowTrace]
    findings: list[Finding]
    problems: list[str] = field(default_factory=list)  # parts that could not be computed

    @property
    def spans(self) -> int:
        return sum(self.volume.spans) if self.volume else 0

    @property
    def errors(self) -> int:
        return sum(self.volume.errors) if self.volume else 0


def _guard(problems: list[str], what: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception as exc:  # one failing part must not lose the whole report
        problems.append(f"{what}: {type(exc).__name__}: {exc}")
        return None


def collect(store: Store, *, since: int | None = None, until: int | None = None,
            now_ns: int | None = None) -> ReportData:
    scope = Scope(since, until)
    problems: list[str] = []
    heat = _guard(problems, "heatmap", lambda: heatmap(store, scope, by=HeatmapBy.OPERATION))
    volume = _guard(problems, "volume", lambda: volume_series(store, scope, heat)) if heat else None
    first = heat.time_edges[0] if heat and heat.time_edges else None
    last = heat.time_edges[-1] if heat and heat.time_edges else None
    view = _guard(problems, "overview", lambda: overview(
        store, since=since if since is not None else 0, until=until if until is not None else 2**62))
    data = ReportData(
        generated_ns=now_ns if now_ns is not None else store.settings.clock(),
        since=since, until=until, first_ns=first, last_ns=last, overview=view,
        quality=_guard(problems, "quality", lambda: quality(store, by=GroupBy.SERVICE,
                                                            since=since, until=until)),
        services=_guard(problems, "profile by service",
                        lambda: profile(store, scope, by=ProfileBy.SERVICE, sort=SortKey.COUNT)),
        operations=_guard(problems, "profile by operation",
                          lambda: profile(store, scope, by=ProfileBy.OPERATION)),
        heat=heat, graph=_guard(problems, "dependencies",
                                lambda: dependencies(store, scope, level=DepsLevel.SERVICE)),
        volume=volume, slow=_guard(problems, "slowest traces", lambda: _slowest(store, scope)) or [],
        findings=[], problems=problems)
    data.findings = _findings(store, scope, data)
    return data


def volume_series(store: Store, scope: Scope, heat: Heatmap) -> Volume | None:
    """Spans and errors per time bucket, on the heatmap's buckets."""
    if not heat.time_edges:
        return None
    columns = len(heat.time_edges) - 1
    spans, errors = [0] * columns, [0] * columns
    for t, n, e in report_sql.volume(store.con, scope, heat.time_edges[0], heat.width_ns):
        if 0 <= t < columns:
            spans[t], errors[t] = n, e
    return Volume(heat.time_edges, spans, errors)


def _slowest(store: Store, scope: Scope) -> list[SlowTrace]:
    out = []
    for trace_id, service, operation, duration in report_sql.slowest_roots(store.con, scope,
                                                                         SLOW_TRACES):
        detail = load_trace(store, trace_id)
        if detail is None:
            continue
        path = critical_path(store, trace_id)
        out.append(SlowTrace(trace_id, service, operation, duration, detail, path))
    return out


def _findings(store: Store, scope: Scope, data: ReportData) -> list[Finding]:
    out: list[Finding] = []

    def add(key: str, title: str, make: Callable[[], tuple[str, Rows | None]]) -> None:
        problems: list[str] = []
        made = _guard(problems, title, make)
        if made is None:
            data.problems.extend(problems)
            out.append(Finding(key, title, f"could not be computed ({problems[0]})", failed=True))
        else:
            lead, rows = made
            out.append(Finding(key, title, lead, rows if rows is not None and rows.rows else None))

    add("hotspots", "Error hotspots", lambda: _hotspots(data.overview))
    add("regressions", "Regressions after a deploy", lambda: _regressions(store, scope))
    add("n-plus-one", "N+1 calls", lambda: _counted(n_plus_one(store, scope).to_rows(),
                                                   "parent operation(s) repeat a call"))
    add("retries", "Retry loops", lambda: _counted(retries(store, scope).to_rows(),
                                                  "retry loop pattern(s)"))
    add("root-cause", "Likely root cause of the error spike", lambda: _root_cause(store, scope, data))
    add("open-spans", "Work that never finished", lambda: _open_spans(data.overview))
    add("flaky-ci", "Flaky CI jobs", lambda: _counted(ci.flaky(store, scope, min_commits=1).to_rows(),
                                                     "job(s) passed and failed on one commit"))
    add("agents", "Agents: worst model × role", lambda: _agents(store, scope))
    return out


def _counted(rows: Rows, what: str) -> tuple[str, Rows | None]:
    if not rows.rows:
        return (rows.notes[0] if rows.notes else "none found"), None
    return f"{len(rows.rows):,} {what}", rows


def _hotspots(view: Overview | None) -> tuple[str, Rows | None]:
    if view is None or not view.hotspots:
        return "no attribute value stands out among failing spans", None
    rows = Rows("errors concentrated on one attribute value",
                ["service", "operation", "attribute", "errors", "spans", "error_pct"],
                [{"service": h.service, "operation": h.operation, "attribute": f"{h.key}={h.value}",
                  "errors": h.errors, "spans": h.spans, "error_pct": 100.0 * h.error_rate}
                 for h in view.hotspots])
    top = view.hotspots[0]
    return (f"errors in {top.service} '{top.operation}' concentrate on {top.key}={top.value} "
            f"({top.errors:,} of {top.spans:,} such spans fail)"), rows


def _regressions(store: Store, scope: Scope) -> tuple[str, Rows | None]:
    report = regressions(store, VersionSplit(scope))
    changed = report.significant
    if not changed:
        return ("no significant change between each service's last two versions"
                if report.operations else "no service changed version in this window"), None
    return f"{len(changed):,} operation(s) changed significantly ({report.comparison})", \
        report.to_rows(significant_only=True)


def _root_cause(store: Store, scope: Scope, data: ReportData) -> tuple[str, Rows | None]:
    """Rank causes for the worst error spike: the bucket with the most errors, when it stands
    out from the window's error rate; the baseline is everything before it."""
    vol = data.volume
    if vol is None or not any(vol.errors):
        return "no errors in this window", None
    rate = sum(vol.errors) / max(1, sum(vol.spans))
    t = max(range(len(vol.errors)), key=lambda i: (vol.errors[i], -i))
    errors, spans = vol.errors[t], vol.spans[t]
    if t == 0 or errors < SPIKE_MIN_ERRORS or errors / max(1, spans) < SPIKE_RATIO * rate:
        return "no error spike stands out from the window's error rate", None
    incident = scope.with_window(vol.time_edges[t], vol.time_edges[t + 1])
    baseline = scope.with_window(vol.time_edges[0], vol.time_edges[t])
    ranking = rank_root_causes(store, incident, baseline)
    if not ranking.ranked:
        return "the error spike has no service standing out", None
    top = ranking.ranked[0]
    return (f"{errors:,} errors in the bucket at {iso(vol.time_edges[t])} "
            f"({100.0 * errors / max(1, spans):.1f}% vs {100.0 * rate:.1f}% overall); "
            f"most likely started in {top.service}"), ranking.to_rows()


def _open_spans(view: Overview | None) -> tuple[str, Rows | None]:
    if view is None or not view.open_spans:
        return "every span that started also ended", None
    rows = Rows("open spans", ["service", "name", "started", "trace_id"],
                [{"service": s.service, "name": s.name, "started": iso(s.start_ns),
                  "trace_id": s.trace_id} for s in view.open_spans])
    return f"{len(view.open_spans):,} span(s) started and never reported an end", rows


def _agents(store: Store, scope: Scope) -> tuple[str, Rows | None]:
    report = agents.worst(store, scope, top=10)
    if not report.groups:
        return "no agent spans or LLM calls in this window", None
    g = report.groups[0]
    return (f"{len(report.groups)} model × role group(s); worst: {' × '.join(g.key)} "
            f"({g.failures:,} of {g.n:,} failed)"), report.to_rows()
