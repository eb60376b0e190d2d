"""Ground truth: the injected incidents and totals, measured from the generated tables.

Every count here is computed from the data the simulator actually emitted (not from the
configured probabilities), so tests and analyses can check themselves against it exactly.

Span counts (totals and per service) are of the OTLP spans (`SimResult.spans`, the traces
files). The orchestrator's worker spans live only in the agent events: `totals.agent_spans`
counts them as staged (`SimResult.agent_spans`) and `agents.spawn_spans` says where they are.
Orphans are measured against both, as a store holding both sources sees them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import MetricType, SpanKind, StatusCode
from telltale.sim.agents import AgentOutput
from telltale.sim.ci import CiOutput
from telltale.sim.incidents import IncidentPlan
from telltale.sim.spans import orphan_mask
from telltale.sim.topology import SERVICES


def _np(t: pa.Table, name: str) -> npt.NDArray[Any]:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False))


def build(plan: IncidentPlan, start_ns: int, end_ns: int, spans: pa.Table,
          agent_spans: pa.Table, logs: pa.Table, metrics: dict[MetricType, pa.Table],
          agents: AgentOutput, ci: CiOutput, broken: dict[str, Any],
          log_templates: list[dict[str, Any]]) -> dict[str, Any]:
    service = _np(spans, "ServiceName")
    error = _np(spans, "StatusCode") == StatusCode.ERROR.value
    server = _np(spans, "SpanKind") == SpanKind.SERVER.value
    # The LLM calls' parents are worker spans, which only the agent events hold.
    every_orphan = orphan_mask(pa.concat_tables([spans, agent_spans]))
    orphans = every_orphan[:spans.num_rows]
    services = {}
    for name in sorted(set(service.tolist())):
        sel = service == name
        services[name] = {
            "spans": int(sel.sum()), "server_spans": int((sel & server).sum()),
            "errors": int((sel & error).sum()), "orphans": int((sel & orphans).sum()),
            "host": SERVICES[name].host,
        }
    totals = {
        "spans": spans.num_rows,
        "traces": pc.count_distinct(spans.column("TraceId")).as_py(),
        "errors": int(error.sum()),
        "orphans": int(every_orphan.sum()),
        "agent_spans": agent_spans.num_rows,
        "logs": logs.num_rows,
        "metric_points": {k.value: t.num_rows for k, t in metrics.items()},
        "agent_events": len(agents.events),
    }
    return {
        "window": {"start_ns": start_ns, "end_ns": end_ns},
        "totals": totals,
        "services": services,
        "incidents": _incidents(plan, (start_ns, end_ns), spans, metrics, agents, ci, broken,
                                orphans),
        "broken_file": broken,
        "agents": agents.truth,
        "ci": ci.truth,
        "log_templates": log_templates,
    }


def _incidents(plan: IncidentPlan, window: tuple[int, int], spans: pa.Table,
               metrics: dict[MetricType, pa.Table], agents: AgentOutput, ci: CiOutput,
               broken: dict[str, Any], orphans: npt.NDArray[np.bool_]) -> list[dict[str, Any]]:
    """One entry per injected incident. Ongoing ones end with the window; the broken file's
    time range is that of the spans it holds."""
    out: list[dict[str, Any]] = []
    start = _np(spans, "StartNs")
    dur = _np(spans, "EndNs") - start
    service = _np(spans, "ServiceName")
    if plan.deploy:
        d = plan.deploy
        sel = (service == d.service) & (_np(spans, "SpanKind") == SpanKind.SERVER.value)
        before, after = dur[sel & (start < d.at_ns)], dur[sel & (start >= d.at_ns)]
        out.append({
            "name": f"{d.service}-latency-regression", "kind": "latency_regression",
            "start_ns": d.at_ns, "end_ns": window[1], "service": d.service,
            "attributes": {"service.version": {"before": d.old_version, "after": d.new_version}},
            "factor": d.factor, "deploy_run": ci.truth.get("deploy_run", {}),
            "measured": {
                "server_spans_before": len(before), "server_spans_after": len(after),
                "mean_ns_before": float(before.mean()) if len(before) else None,
                "mean_ns_after": float(after.mean()) if len(after) else None,
                "median_ns_before": float(np.median(before)) if len(before) else None,
                "median_ns_after": float(np.median(after)) if len(after) else None,
            },
        })
    if plan.burst:
        b = plan.burst
        value = pc.map_lookup(spans.column("SpanAttributes"), b.attribute, "first")
        tagged = np.asarray(pc.equal(value, b.value).fill_null(False).combine_chunks())
        inside = b.window.contains(start)
        err = _np(spans, "StatusCode") == StatusCode.ERROR.value
        out.append({
            "name": f"{b.value}-error-burst", "kind": "error_burst",
            "start_ns": b.window.start_ns, "end_ns": b.window.end_ns, "service": b.service,
            "attributes": {b.attribute: b.value, "http.response.status_code": b.status_code},
            "error_probability": b.p_error,
            "measured": {
                "tagged_spans_in_window": int((tagged & inside).sum()),
                "tagged_errors_in_window": int((tagged & inside & err).sum()),
                "tagged_spans_outside": int((tagged & ~inside).sum()),
                "tagged_errors_outside": int((tagged & ~inside & err).sum()),
                "all_errors_in_window": int((inside & err).sum()),
            },
        })
    if plan.orphans:
        o = plan.orphans
        out.append({
            "name": f"{o.service}-orphan-spans", "kind": "orphan_spans",
            "start_ns": o.window.start_ns, "end_ns": o.window.end_ns, "service": o.service,
            "attributes": {}, "measured": {
                "orphans": int((orphans & (service == o.service)).sum()),
                "orphans_all_services": int(orphans.sum()),
            },
        })
    if plan.enabled:
        out.append({
            "name": "broken-lines", "kind": "broken_lines",
            "start_ns": broken["start_ns"], "end_ns": broken["end_ns"],
            "file": broken["file"], "attributes": {},
            "measured": {k: broken[k] for k in ("lines", "broken_lines", "good_spans")},
        })
    if plan.swap:
        s = plan.swap
        gauge = metrics[MetricType.GAUGE]
        host = pc.map_lookup(gauge.column("ResourceAttributes"), "host.name", "first")
        sel = pc.and_(pc.equal(host, s.host),
                      pc.equal(gauge.column("MetricName"), "system.paging.utilization"))
        peak = pc.max(gauge.filter(sel).column("Value")).as_py()
        out.append({
            "name": f"{s.host}-swap-crisis", "kind": "swap_crisis",
            "start_ns": s.window.start_ns, "end_ns": s.window.end_ns, "host": s.host,
            "attributes": {"system.paging.utilization": s.peak_swap},
            "latency_factor": s.latency_factor,
            "services": sorted(n for n, v in SERVICES.items() if v.host == s.host),
            "measured": {"peak_swap": peak},
        })
    if plan.flaky:
        f = plan.flaky
        out.append({
            "name": f"flaky-{f.job}", "kind": "flaky_ci_job", "start_ns": window[0],
            "end_ns": window[1],
            "service": "ci", "attributes": {"cicd.pipeline.name": f.pipeline,
                                            "cicd.pipeline.task.name": f.job},
            "first_attempt_failure_probability": f.p_fail,
            "measured": {k: ci.truth[k] for k in ("flaky_attempts", "flaky_first_failures",
                                                  "flaky_retry_passes")},
        })
    if plan.n_plus_one:
        out.append(_n_plus_one(plan, spans))
    if plan.stuck:
        out.append({
            "name": "stuck-worker", "kind": "stuck_worker",
            "start_ns": agents.truth["stuck_spawn_ns"][0], "end_ns": window[1],
            "service": "orchestrator",
            "attributes": {"agent.worker.id": agents.truth["stuck_workers"][0]},
            "measured": {"stuck_workers": agents.truth["stuck_workers"]},
        })
    return out


def _n_plus_one(plan: IncidentPlan, spans: pa.Table) -> dict[str, Any]:
    """The looping step's repeated queries, counted per parent span from the emitted spans
    (no flow template issues this query in this service, so every one of them is injected)."""
    n1 = plan.n_plus_one
    assert n1 is not None
    child = f"SELECT shop.{n1.table}"
    sel = pc.and_(pc.equal(spans.column("ServiceName"), n1.service),
                  pc.equal(spans.column("SpanName"), child))
    queries = spans.filter(sel)
    per_parent = queries.group_by(["TraceId", "ParentSpanId"]).aggregate([("SpanId", "count")])
    reps = np.asarray(per_parent.column("SpanId_count").to_numpy())
    parents = spans.filter(pc.is_in(spans.column("SpanId"), value_set=per_parent.column(
        "ParentSpanId").combine_chunks()))
    return {
        "name": f"{n1.service}-n-plus-one", "kind": "n_plus_one",
        "start_ns": n1.window.start_ns, "end_ns": n1.window.end_ns, "service": n1.service,
        "parent_operation": n1.parent, "child_operation": child, "child_kind": "Client",
        "attributes": {"db.collection.name": n1.table, "db.query.text": n1.query},
        "share": n1.share, "repetitions": {"min": n1.min_repeats, "max": n1.max_repeats},
        # The loop runs inside the step's own time: no span's duration changes.
        "share_of_parent_self_time": n1.time_share,
        "measured": {
            "affected_traces": pc.count_distinct(per_parent.column("TraceId")).as_py(),
            "parents": per_parent.num_rows, "queries": queries.num_rows,
            "min_repetitions": int(reps.min()) if len(reps) else 0,
            "max_repetitions": int(reps.max()) if len(reps) else 0,
            "median_repetitions": float(np.median(reps)) if len(reps) else 0.0,
            "parent_operations": sorted(set(parents.column("SpanName").to_pylist())),
        },
    }
