"""Root-cause ranking: which service most likely started an incident, and the evidence.

Every service is compared between an incident window and a baseline on what *it itself* did,
so that a failure propagating up through its callers does not make the callers look guilty:
- **structure**: how differently its operations call their callees (total variation distance
  between the windows' call-set distributions: skipped calls, error handlers, retries), minus
  the largest such change among its callees (a caller that stops after a failed call changes
  too, but one level up);
- **self time**: the shift of its operations' median self time (duration minus children's), a
  latency change of its own code rather than of what it waits for, measured against how much
  that operation's self time varies in the baseline (a robust effect size);
- **errors**: the rise in its *origin* error rate (failed spans none of whose children failed);
  a span with an attached error-level log counts as failed too (`log_errors`, on by default:
  services that log an exception but leave the span status unset), reported apart;
- **logs**: the rise in its share of error-level log lines (when logs exist);
- **metrics**: how far its gauges' incident median sits from their recent history, in units of
  the largest deviation that history itself showed (when metrics exist); only gauges of its own
  work count, not its client-side latency (its callees' time) or its node's (its neighbours').

Each kind of evidence is put on a common footing by how much a service stands out from all
services in the same incident, (x - median) / (IQR + floor), so the method calibrates itself per
incident; the floors are the smallest change that means anything in each signal's own unit
(10 % of calls, a 10 % log-ratio, 5 points of error rate, half the history's largest swing),
not fitted to any data set. A service's score is the sum of its positive standouts: one strong
signal can carry a service to the top, and agreeing signals reinforce each other. Estimates
from few spans are shrunk towards "no change" (n / (n + 5)).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, rootcause_sql

# Gauges that describe something other than the service's own work: its outgoing calls (client
# latency: its callees' time) and the node it shares with other pods. A slow callee or a busy
# neighbour would otherwise read as the caller's / the tenant's own anomaly.
NOT_OWN_METRIC = re.compile(r"(?i)client|(^|[^a-z])node")
PSEUDO_COUNT = 5.0
SPREAD_FLOOR = 0.1
MINUTE_NS = 60 * 10**9


class Evidence(StrEnum):
    STRUCTURE = "structure"
    SELF_TIME = "self_time"
    ERRORS = "errors"
    LOGS = "logs"
    METRICS = "metrics"


FLOORS = {Evidence.STRUCTURE: 0.1, Evidence.SELF_TIME: 0.1, Evidence.ERRORS: 0.05,
          Evidence.LOGS: 0.05, Evidence.METRICS: 0.5}


@dataclass
class ServiceEvidence:
    """What changed in one service between baseline and incident (signed shifts are natural
    logs of incident / baseline medians: 0.69 is twice as slow, -0.69 twice as fast)."""

    service: str
    spans_incident: int = 0
    spans_baseline: int = 0
    latency_shift: float = 0.0
    callee_latency_shift: float = 0.0
    self_time_shift: float = 0.0
    self_time_effect: float = 0.0  # the shift in units of the operation's baseline spread
    self_time_operation: str = ""
    structure_change: float = 0.0
    callee_structure_change: float = 0.0
    structure_operation: str = ""
    error_rate_incident: float = 0.0
    error_rate_baseline: float = 0.0
    error_operation: str = ""
    log_errors_incident: int = 0  # origin errors only an attached error log shows
    log_errors_baseline: int = 0
    new_error_types: list[str] = field(default_factory=list)
    new_operations: list[str] = field(default_factory=list)
    vanished_operations: list[str] = field(default_factory=list)
    log_error_rate_incident: float | None = None
    log_error_rate_baseline: float | None = None
    new_log_error_templates: int = 0
    metric: str = ""
    metric_anomaly: float = 0.0
    raw: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RankedService:
    rank: int
    service: str
    score: float
    standouts: dict[str, float]
    reasons: list[str]
    evidence: ServiceEvidence


@dataclass(frozen=True)
class RootCauseRanking:
    incident: Scope
    baseline: Scope
    ranked: list[RankedService]
    notes: list[str]

    def rank_of(self, service: str) -> int | None:
        return next((r.rank for r in self.ranked if r.service == service), None)

    def to_rows(self) -> Rows:
        rows = [{"rank": r.rank, "service": r.service, "score": round(r.score, 3),
                 "reasons": "; ".join(r.reasons[:3]) or "-"} for r in self.ranked]
        return Rows("Likely root causes", ["rank", "service", "score", "reasons"], rows,
                    self.notes, {"evidence": [
                        {"rank": r.rank, "service": r.service, "standouts": r.standouts,
                         "reasons": r.reasons, **asdict(r.evidence)} for r in self.ranked],
                        "incident": asdict(self.incident), "baseline": asdict(self.baseline)})


def _shrink(n_inc: int, n_bas: int) -> float:
    m = min(n_inc, n_bas)
    return m / (m + PSEUDO_COUNT)


def _log_ratio(inc: float, bas: float, floor_ns: float) -> float:
    return math.log((inc + floor_ns) / (bas + floor_ns))


def _trace_evidence(store: Store, incident: Scope, baseline: Scope, min_spans: int,
                    latency_floor_ns: float, log_errors: bool) -> dict[str, ServiceEvidence]:
    ev: dict[str, ServiceEvidence] = {}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (svc, op, n_i, n_b, dur_i, dur_b, self_i, self_b, err_i, err_b, log_i, log_b,
         tvd, self_mad) in rootcause_sql.operations(store.con, incident, baseline,
                                                    latency_floor_ns, log_errors):
        e = ev.setdefault(svc, ServiceEvidence(svc))
        e.log_errors_incident += int(log_i)
        e.log_errors_baseline += int(log_b)
        e.spans_incident += n_i
        e.spans_baseline += n_b
        t = totals[svc]
        t[0], t[1], t[2], t[3] = t[0] + n_i, t[1] + n_b, t[2] + err_i, t[3] + err_b
        if n_b == 0 and n_i >= min_spans:
            e.new_operations.append(op)
        if n_i == 0 and n_b >= min_spans:
            e.vanished_operations.append(op)
        if n_i < min_spans or n_b < min_spans:
            continue
        k = _shrink(n_i, n_b)
        lat = k * _log_ratio(dur_i, dur_b, latency_floor_ns)
        own = _log_ratio(self_i, self_b, latency_floor_ns)
        # In units of the operation's own baseline spread: a 2x change of a steady operation
        # says more than the same change of one that varies 10x from call to call.
        effect = k * own / (float(self_mad or 0.0) + SPREAD_FLOOR)
        change = k * float(tvd)
        err = k * (err_i / n_i - err_b / n_b)
        if abs(lat) > abs(e.latency_shift):
            e.latency_shift = lat
        if abs(effect) > abs(e.self_time_effect):
            e.self_time_effect, e.self_time_shift, e.self_time_operation = effect, own, op
        if change > e.structure_change:
            e.structure_change, e.structure_operation = change, op
        if err > e.raw.get(Evidence.ERRORS.value, 0.0):
            e.raw[Evidence.ERRORS.value] = err
            e.error_operation = op
    for svc, (n_i, n_b, err_i, err_b) in totals.items():
        e = ev[svc]
        e.error_rate_incident = err_i / n_i if n_i else 0.0
        e.error_rate_baseline = err_b / n_b if n_b else 0.0
        if n_i and n_b:  # the whole service's rate catches errors in new operations too
            overall = _shrink(n_i, n_b) * (e.error_rate_incident - e.error_rate_baseline)
            e.raw[Evidence.ERRORS.value] = max(e.raw.get(Evidence.ERRORS.value, 0.0), overall)
    called: dict[str, set[str]] = defaultdict(set)
    for caller, callee in rootcause_sql.callees(store.con, incident, baseline):
        called[caller].add(callee)
    for svc, e in ev.items():
        below = [ev[c] for c in called[svc] if c in ev]
        if below:
            e.callee_latency_shift = max((b.latency_shift for b in below), key=abs)
            e.callee_structure_change = max(b.structure_change for b in below)
        e.raw[Evidence.STRUCTURE.value] = max(0.0, e.structure_change - e.callee_structure_change)
        e.raw[Evidence.SELF_TIME.value] = abs(e.self_time_effect)
    for svc, message, _n in rootcause_sql.new_errors(store.con, incident, baseline, log_errors):
        ev[svc].new_error_types.append(message)
    return ev


def _log_evidence(store: Store, incident: Scope, baseline: Scope,
                  ev: dict[str, ServiceEvidence]) -> bool:
    rows = rootcause_sql.logs(store.con, incident, baseline)
    for svc, n_i, n_b, err_i, err_b, new_templates in rows:
        e = ev.setdefault(svc, ServiceEvidence(svc))
        e.log_error_rate_incident = err_i / n_i if n_i else None
        e.log_error_rate_baseline = err_b / n_b if n_b else None
        e.new_log_error_templates = int(new_templates)
        rise = (e.log_error_rate_incident or 0.0) - (e.log_error_rate_baseline or 0.0)
        e.raw[Evidence.LOGS.value] = _shrink(n_i, n_b) * max(0.0, rise) if n_b else 0.0
    return any(n_i for _, n_i, *_ in rows)


def _metric_evidence(store: Store, incident: Scope, history_ns: int, min_points: int,
                     ev: dict[str, ServiceEvidence]) -> bool:
    if incident.since is None or incident.until is None:
        return False
    rows = rootcause_sql.metrics(store.con, incident.since, incident.until,
                                 incident.since - history_ns, incident.services, min_points)
    for svc, metric, med, inc, mad, max_dev, _n, _ni in rows:
        if NOT_OWN_METRIC.search(metric):
            continue
        # How far the incident sits, in units of the largest swing the history itself had.
        score = abs(inc - med) / (max_dev + mad + 1e-6 * abs(med) + 1e-12)
        e = ev.setdefault(svc, ServiceEvidence(svc))
        if score > e.metric_anomaly:
            e.metric, e.metric_anomaly = metric, score
            e.raw[Evidence.METRICS.value] = score
    return bool(rows)


def _standouts(ev: dict[str, ServiceEvidence], kinds: list[Evidence]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {s: {} for s in ev}
    for kind in kinds:
        values = np.array([ev[s].raw.get(kind.value, 0.0) for s in ev])
        med = float(np.median(values))
        iqr = float(np.quantile(values, 0.75) - np.quantile(values, 0.25))
        for s in ev:
            out[s][kind.value] = (ev[s].raw.get(kind.value, 0.0) - med) / (iqr + FLOORS[kind])
    return out


def _reasons(e: ServiceEvidence, standouts: dict[str, float]) -> list[str]:
    said: list[tuple[float, str]] = []
    z = standouts
    if z.get(Evidence.SELF_TIME, 0) > 0 and e.self_time_shift:
        said.append((z[Evidence.SELF_TIME], f"self time x{math.exp(e.self_time_shift):.2f} in "
                     f"{e.self_time_operation}"))
    if z.get(Evidence.STRUCTURE, 0) > 0:
        said.append((z[Evidence.STRUCTURE], f"calls changed ({e.structure_change:.0%}) in "
                     f"{e.structure_operation}, callees {e.callee_structure_change:.0%}"))
    if z.get(Evidence.ERRORS, 0) > 0:
        said.append((z[Evidence.ERRORS], f"own errors {e.error_rate_baseline:.1%} -> "
                     f"{e.error_rate_incident:.1%} (most in {e.error_operation or 'all'})"))
    if z.get(Evidence.LOGS, 0) > 0:
        said.append((z[Evidence.LOGS], f"error logs {e.log_error_rate_baseline or 0:.1%} -> "
                     f"{e.log_error_rate_incident or 0:.1%}, {e.new_log_error_templates} new"))
    if z.get(Evidence.METRICS, 0) > 0:
        said.append((z[Evidence.METRICS], f"{e.metric} {e.metric_anomaly:.1f}x its usual swing"))
    out = [text for _, text in sorted(said, key=lambda p: -p[0])]
    out += [f"new error: {m}" for m in e.new_error_types[:2]]
    return out


def _hold_against(ev: dict[str, ServiceEvidence], other: dict[str, ServiceEvidence]) -> None:
    """Keep of each change only what `other` (the same incident against another reference)
    also shows: a reference that itself holds an anomaly makes every service that differs from
    that anomaly look changed, and a second, independent reference does not share it. A service
    `other` has no spans of cannot be compared there, so keeps what it has."""
    for svc, e in ev.items():
        seen = other.get(svc)
        if seen is None or not seen.spans_baseline:
            continue
        for kind in list(e.raw):
            e.raw[kind] = min(e.raw[kind], seen.raw.get(kind, 0.0))


def rank_root_causes(store: Store, incident: Scope, baseline: Scope, *, min_spans: int = 3,
                     latency_floor_ns: float = 200_000.0, metric_history_ns: int = 60 * MINUTE_NS,
                     metric_min_points: int = 5, log_errors: bool = True,
                     references: tuple[Scope, ...] = ()) -> RootCauseRanking:
    """Rank services by how likely each started the incident (best first).

    `baseline` is the reference for spans and logs; gauges are compared with their own history
    over `metric_history_ns` before the incident (metrics are continuous series, and one quiet
    minute is too short to know how noisy a series is). `latency_floor_ns` is added to both
    medians so that sub-floor jitter of near-zero self times does not read as a big ratio.
    `log_errors` counts a span with an attached error-level log as failed. `references` are
    further baselines (e.g. the minutes just before the incident): span and log changes count
    only as far as the incident differs from every one of them (the evidence shown is the
    first baseline's); one without spans is skipped.
    """
    ev = _trace_evidence(store, incident, baseline, min_spans, latency_floor_ns, log_errors)
    kinds = [Evidence.STRUCTURE, Evidence.SELF_TIME, Evidence.ERRORS]
    notes: list[str] = []
    has_logs = _log_evidence(store, incident, baseline, ev)
    for ref in references:
        other = _trace_evidence(store, incident, ref, min_spans, latency_floor_ns, log_errors)
        if not any(e.spans_baseline for e in other.values()):
            notes.append(f"reference {ref.since}..{ref.until} has no spans: not used")
            continue
        _log_evidence(store, incident, ref, other)
        _hold_against(ev, other)
        notes.append(f"changes held against reference {ref.since}..{ref.until} too")
    if has_logs:
        kinds.append(Evidence.LOGS)
    if _metric_evidence(store, incident, metric_history_ns, metric_min_points, ev):
        kinds.append(Evidence.METRICS)
    if not any(e.spans_incident for e in ev.values()):
        notes.append("no spans in the incident window")
    if not any(e.spans_baseline for e in ev.values()):
        notes.append("no spans in the baseline window: trace evidence is empty")
    z = _standouts(ev, kinds) if ev else {}
    scores = {s: sum(max(v, 0.0) for v in z[s].values()) for s in ev}
    order = sorted(ev, key=lambda s: (-scores[s], s))
    ranked = [RankedService(i + 1, s, scores[s], {k: round(v, 4) for k, v in z[s].items()},
                            _reasons(ev[s], z[s]), ev[s]) for i, s in enumerate(order)]
    from_logs = sum(e.log_errors_incident for e in ev.values())
    if from_logs:
        notes.append(f"{from_logs:,} span error(s) in the incident come only from attached error "
                     "logs (status unset); log_errors=False leaves them out")
    notes.append("evidence used: " + ", ".join(k.value for k in kinds))
    return RootCauseRanking(incident, baseline, ranked, notes)
