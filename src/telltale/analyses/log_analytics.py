"""Log analytics over the templates assigned at ingest: which events, how often, how erroneous,
what is new, what changed rate, which values their parameters take, and record search.

Counting happens in DuckDB over `telltale_log_template_of` (store/log_analytics_sql.py); Python
sees one row per template. The rate-change test, per template, compares the window's count x_w
over T_w seconds with the baseline's x_b over T_b: under equal Poisson rates, x_w given
n = x_w + x_b is Binomial(n, T_w / (T_w + T_b)) (the conditional test for two Poisson rates),
so its two-sided exact p-value needs no large-sample approximation. p-values are adjusted for
the number of templates tested (Benjamini–Hochberg), and a change is reported only when it is
also large: a rate ratio of at least `min_fold` (or at most 1/min_fold) on at least `min_count`
records in the two windows together. Templates absent from the baseline are "new", not changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from telltale.analyses.heatmap import iso
from telltale.normalize.log_miner import collapse_text
from telltale.render.rows import Rows
from telltale.store import Store
from telltale.store import log_analytics_sql as sql
from telltale.store.log_analytics_sql import LogFilter, SearchFilter

NS_PER_S = 1_000_000_000


def _iso(ns: int | None) -> str | None:
    return None if ns is None else iso(int(ns))


@dataclass(frozen=True)
class TemplateStat:
    template_id: int
    template: str
    records: int
    errors: int
    first_ns: int
    last_ns: int
    services: tuple[str, ...]

    @property
    def error_share(self) -> float:
        return self.errors / self.records if self.records else 0.0


@dataclass
class TemplateCounts:
    """Templates of the records in a window, most frequent first."""

    window: LogFilter
    records: int        # log records in the window
    assigned: int       # of which with a template (all, unless stored before templates were)
    templates: list[TemplateStat]

    def to_rows(self) -> Rows:
        notes = []
        if self.assigned < self.records:
            notes.append(f"{self.records - self.assigned:,} of {self.records:,} log records have"
                         " no template yet (stored before templates were assigned): run"
                         " `telltale logs reindex`")
        rows = [{"id": t.template_id, "template": t.template, "records": t.records,
                 "share": t.records / self.assigned if self.assigned else 0.0,
                 "errors": t.errors, "error_share": t.error_share,
                 "first_seen": _iso(t.first_ns), "last_seen": _iso(t.last_ns),
                 "services": list(t.services)} for t in self.templates]
        return Rows("Log templates", ["id", "template", "records", "share", "errors",
                                      "error_share", "first_seen", "last_seen", "services"],
                    rows, notes)


def _filter(since: int | None, until: int | None, services: tuple[str, ...]) -> LogFilter:
    return LogFilter(since, until, tuple(services))


def _require_templates(store: Store) -> None:
    if not sql.has_templates(store.con):
        raise ValueError(f"{store.path} predates log templates: run `telltale logs reindex`"
                         " (it upgrades the store and assigns them)")


def template_counts(store: Store, since: int | None = None, until: int | None = None,
                    services: tuple[str, ...] = (), top: int | None = 50) -> TemplateCounts:
    """Templates by record count in [since, until), with error share (SeverityNumber >= 17),
    first/last record and the services that logged them."""
    _require_templates(store)
    f = _filter(since, until, services)
    rows = sql.templates(store.con, f, top)
    records, assigned = sql.coverage(store.con, f)
    stats = [TemplateStat(int(r[0]), collapse_text(r[1]), int(r[2]), int(r[3]), int(r[4]),
                          int(r[5]), tuple(r[6])) for r in rows]
    return TemplateCounts(f, records, assigned, stats)


@dataclass(frozen=True)
class TemplateChange:
    template_id: int
    template: str
    window_records: int
    window_errors: int
    baseline_records: int
    first_ns: int | None       # in the window
    last_ns: int | None
    first_seen_ns: int | None  # ever (all stored records)
    rate_ratio: float | None   # window rate / baseline rate (None: no baseline records)
    p_value: float | None      # exact conditional test (None: not tested)
    q_value: float | None      # Benjamini–Hochberg adjusted


@dataclass
class TemplateTrend:
    """New templates (in the window, none in the baseline) and templates whose rate changed."""

    window: LogFilter
    baseline: LogFilter
    new: list[TemplateChange]
    changed: list[TemplateChange]
    alpha: float
    min_fold: float

    def _span(self) -> str:
        w, b = self.window, self.baseline
        return (f"window {_iso(w.since)} .. {_iso(w.until)}, "
                f"baseline {_iso(b.since)} .. {_iso(b.until)}")

    def new_rows(self) -> Rows:
        rows = [{"id": c.template_id, "template": c.template, "records": c.window_records,
                 "errors": c.window_errors, "first_seen": _iso(c.first_ns),
                 "last_seen": _iso(c.last_ns), "first_seen_ever": _iso(c.first_seen_ns)}
                for c in self.new]
        return Rows("New log templates", ["id", "template", "records", "errors", "first_seen",
                                          "last_seen", "first_seen_ever"], rows,
                    [f"templates with records in the window and none in the baseline; {self._span()}"])

    def changed_rows(self) -> Rows:
        rows = [{"id": c.template_id, "template": c.template, "window": c.window_records,
                 "baseline": c.baseline_records, "rate_ratio": c.rate_ratio,
                 "p_value": c.p_value, "q_value": c.q_value} for c in self.changed]
        return Rows("Log templates whose rate changed",
                    ["id", "template", "window", "baseline", "rate_ratio", "p_value", "q_value"],
                    rows, [f"exact conditional Poisson rate test, Benjamini–Hochberg q <= "
                           f"{self.alpha:g}, ratio >= {self.min_fold:g}x either way; {self._span()}"])

    def to_rows(self) -> list[Rows]:
        return [self.new_rows(), self.changed_rows()]


def baseline_window(store: Store, since: int | None, until: int | None,
                    baseline_since: int | None, baseline_until: int | None,
                    baseline_length: int | None = None) -> tuple[int, int, int, int]:
    """(since, until, baseline since, baseline until) as `patterns new-shapes` spells them: the
    window needs a start; its end defaults to just after the last record; the baseline ends
    where the window starts and is as long as the window (or `baseline_length`)."""
    if since is None:
        raise ValueError("a window start is needed (--since or --last)")
    if until is None:
        last = sql.log_range(store.con)[1]
        until = since if last is None else max(last + 1, since)
    base_until = since if baseline_until is None else baseline_until
    length = (until - since) if baseline_length is None else baseline_length
    base_since = base_until - length if baseline_since is None else baseline_since
    if base_since >= base_until:
        raise ValueError("the baseline window is empty")
    if until <= since:
        raise ValueError("the window is empty")
    return since, until, base_since, base_until


def trend(store: Store, since: int | None, until: int | None, *,
          baseline_since: int | None = None, baseline_until: int | None = None,
          baseline_length: int | None = None, services: tuple[str, ...] = (),
          alpha: float = 0.05, min_fold: float = 2.0, min_count: int = 10) -> TemplateTrend:
    """New templates and significant rate changes between a baseline window and the window."""
    # scipy.stats costs ~0.45 s to import: only when a trend is computed, not per CLI start.
    from scipy.stats import binomtest  # type: ignore[import-untyped]  # scipy ships no stubs

    _require_templates(store)
    lo, hi, b_lo, b_hi = baseline_window(store, since, until, baseline_since, baseline_until,
                                         baseline_length)
    window, baseline = _filter(lo, hi, services), _filter(b_lo, b_hi, services)
    t_w, t_b = hi - lo, b_hi - b_lo
    new: list[TemplateChange] = []
    tested: list[tuple[float, TemplateChange]] = []
    for r in sql.window_vs_baseline(store.con, window, baseline):
        tid, text, x_w, errors, first, last, x_b, ever = r
        base = TemplateChange(int(tid), collapse_text(text), int(x_w), int(errors), int(x_b),
                              first, last, ever, None, None, None)
        if x_b == 0:
            new.append(base)
            continue
        if x_w + x_b < min_count:
            continue
        p = float(binomtest(int(x_w), int(x_w + x_b), t_w / (t_w + t_b)).pvalue)
        ratio = (x_w / t_w) / (x_b / t_b)
        tested.append((p, TemplateChange(base.template_id, base.template, base.window_records,
                                          base.window_errors, base.baseline_records, first,
                                          last, ever, ratio, p, None)))
    q_values = benjamini_hochberg([p for p, _ in tested])
    changed = []
    for (_p, c), q in zip(tested, q_values, strict=True):
        if q <= alpha and c.rate_ratio is not None and (
                c.rate_ratio >= min_fold or c.rate_ratio <= 1 / min_fold):
            changed.append(TemplateChange(**{**c.__dict__, "q_value": q}))
    new.sort(key=lambda c: (-c.window_records, c.template_id))
    changed.sort(key=lambda c: (c.q_value or 0.0, -abs(_log_ratio(c)), c.template_id))
    return TemplateTrend(window, baseline, new, changed, alpha, min_fold)


def _log_ratio(c: TemplateChange) -> float:
    return math.log(c.rate_ratio) if c.rate_ratio else float("-inf")


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """BH-adjusted p-values (q-values), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    q = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        q[i] = running
    return q


@dataclass(frozen=True)
class ParamValue:
    position: int   # slot number from 1, in the template's order
    value: str
    records: int
    distinct: int   # distinct values at this position


@dataclass
class TemplateParams:
    """The most frequent values of each `<*>` slot of one template."""

    template_id: int
    template: str
    slots: int
    records: int          # records whose parameters fill the template's current slots
    other_shape: int      # records assigned before the template last widened
    values: list[ParamValue]

    def to_rows(self) -> Rows:
        notes = [f"template {self.template_id}: {self.template}"]
        if self.other_shape:
            notes.append(f"{self.other_shape:,} records were assigned when the template had"
                         " fewer slots and are not counted; `telltale logs reindex --all`"
                         " re-extracts their parameters")
        rows = [{"position": v.position, "value": v.value, "records": v.records,
                 "share": v.records / self.records if self.records else 0.0,
                 "distinct": v.distinct} for v in self.values]
        return Rows(f"Parameter values of log template {self.template_id}",
                    ["position", "value", "records", "share", "distinct"], rows, notes)


def template_params(store: Store, template_id: int, since: int | None = None,
                    until: int | None = None, services: tuple[str, ...] = (),
                    top: int = 10) -> TemplateParams:
    """Top `top` values per slot of a template, over its records in the window."""
    _require_templates(store)
    row = sql.template_row(store.con, template_id)
    if row is None:
        raise ValueError(f"no log template {template_id}")
    text = collapse_text(row[1])
    slots = text.count("<*>")
    f = _filter(since, until, services)
    shapes = dict(sql.param_shapes(store.con, template_id, f))
    values = [ParamValue(int(p), str(v), int(n), int(d))
              for p, v, n, d in sql.top_params(store.con, template_id, slots, f, top)]
    matching = shapes.get(slots, 0)
    return TemplateParams(template_id, text, slots, matching,
                          sum(shapes.values()) - matching, values)


@dataclass(frozen=True)
class LogRecord:
    timestamp_ns: int
    service: str
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    body: str
    template_id: int | None
    params: tuple[str, ...] | None


@dataclass
class LogSearch:
    records: list[LogRecord]
    limit: int

    def to_rows(self) -> Rows:
        rows = [{"time": iso(r.timestamp_ns), "timestamp_ns": r.timestamp_ns,
                 "service": r.service, "severity": r.severity_text or str(r.severity_number),
                 "template_id": r.template_id, "trace_id": r.trace_id or None,
                 "span_id": r.span_id or None, "body": r.body} for r in self.records]
        notes = [f"newest first; showing the first {self.limit:,} (raise --limit)"] \
            if len(self.records) >= self.limit else []
        return Rows("Log records", ["time", "service", "severity", "template_id", "trace_id",
                                    "body"], rows, notes)


SEVERITY_NAMES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17,
                  "fatal": 21}


def severity_number(text: str) -> int:
    """A minimum severity from a name (error, warn, ...) or an OpenTelemetry number (1-24)."""
    name = text.strip().lower()
    if name in SEVERITY_NAMES:
        return SEVERITY_NAMES[name]
    if name.isdigit() and 1 <= int(name) <= 24:
        return int(name)
    raise ValueError(f"unknown severity {text!r}: use trace, debug, info, warn, error, fatal"
                     " or a number 1-24")


def search_logs(store: Store, text: str | None = None, *, template_id: int | None = None,
                min_severity: int | None = None, trace_id: str | None = None,
                since: int | None = None, until: int | None = None,
                services: tuple[str, ...] = (), limit: int = 100) -> LogSearch:
    """Log records matching every given filter (body substring, case-insensitive), newest first."""
    _require_templates(store)
    rows = sql.search(store.con, _filter(since, until, services),
                      SearchFilter(text or None, template_id, min_severity, trace_id), limit)
    records = [LogRecord(int(r[0]), r[1], r[2] or "", int(r[3] or 0), r[4] or "", r[5] or "",
                         r[6] or "", None if r[7] is None else int(r[7]),
                         None if r[8] is None else tuple(r[8])) for r in rows]
    return LogSearch(records, limit)
