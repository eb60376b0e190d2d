"""Service log records from a handful of templates, many correlated to spans.

Request, slow-request and error logs are derived from the generated spans (same trace and span
ids, timestamps at the span's end), background logs come at Poisson times, and incidents leave
their own traces in the logs (deploy restart, provider retries, memory pressure, an agent worker
that stops reporting). Ground truth keeps every template with `<*>` for its variable parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import SpanKind
from telltale.normalize.staging import LOGS
from telltale.sim import columns as col
from telltale.sim.ids import I64
from telltale.sim.incidents import swap_ramp
from telltale.sim.spans import Context
from telltale.sim.topology import HOSTS, SERVICES

SEVERITY = {"INFO": 9, "WARN": 13, "ERROR": 17}
# (template, severity, scope); variable parts are {placeholders} here and <*> in the truth.
TEMPLATES = (
    ("request {name} completed with status {code} in {ms} ms", "INFO", "access"),
    ("slow request {name} took {ms} ms (median {median} ms)", "WARN", "access"),
    ("unhandled {type} in {name}: {message}", "ERROR", "errors"),
    ("connection pool stats: active={a} idle={b} waiting={c}", "INFO", "db.pool"),
    ("cache hit ratio {a}% over the last 60 s", "INFO", "cache"),
    ("shutting down {service} version {version}", "INFO", "lifecycle"),
    ("starting {service} version {version}", "INFO", "lifecycle"),
    ("payment provider {provider} returned {code}, retrying (attempt {n})", "WARN", "payment"),
    ("memory pressure on {host}: swap usage at {p}%", "WARN", "system"),
    ("spawned worker {worker} model={model} caste={caste} task={task}", "INFO", "agents"),
    ("worker {worker} has not reported for {s} s", "WARN", "agents"),
)
REQUEST_LOG_RATE = 0.05


@dataclass
class _Batch:
    template: int
    ts: I64
    resource: I64
    body: pa.Array
    trace: pa.Array
    span: pa.Array


def _batch(template: int, ts: I64, resource: I64, fields: dict[str, pa.Array],
           trace: pa.Array | None = None, span: pa.Array | None = None) -> _Batch:
    n = len(ts)
    body = col.render(TEMPLATES[template][0], fields, n)
    return _Batch(template, ts, resource, body, trace if trace is not None else col.const("", n),
                  span if span is not None else col.const("", n))


def generate(spans: pa.Table, agent_events: list[dict[str, Any]], ctx: Context,
             rng: np.random.Generator) -> tuple[pa.Table, list[dict[str, Any]]]:
    res = ctx.resources
    batches = _from_spans(spans, ctx, rng)
    batches += _background(ctx, rng)
    batches += _incidents(spans, agent_events, ctx)
    batches = [b for b in batches if len(b.ts)]
    ts = np.concatenate([b.ts for b in batches])
    resource = np.concatenate([b.resource for b in batches])
    template = np.concatenate([np.full(len(b.ts), b.template) for b in batches])
    order = np.lexsort((template, ts, res.service_rank[resource]))
    take = pa.array(order)
    ts, resource, template = ts[order], resource[order], template[order]
    n = len(ts)
    trace = pa.concat_arrays([b.trace for b in batches]).take(take)
    body = pa.concat_arrays([b.body for b in batches]).take(take)
    severity = [TEMPLATES[t][1] for t in range(len(TEMPLATES))]
    correlated = np.asarray(pc.not_equal(trace, ""))
    table = col.table(LOGS, {
        "Pos": col.positions("sim log ", n),
        "RecordBytes": pa.array(col.utf8_lengths(body)),
        "Timestamp": pa.array(ts),
        "ObservedTimestamp": pa.array(ts + rng.integers(1, 50, n) * 1_000_000),
        "TraceId": trace,
        "SpanId": pa.concat_arrays([b.span for b in batches]).take(take),
        "TraceFlags": pa.array(correlated.astype(np.int64)),
        "SeverityText": col.choose(template, severity),
        "SeverityNumber": pa.array(np.take([SEVERITY[s] for s in severity], template)),
        "ServiceName": res.service_names().take(pa.array(resource)),
        "Body": body,
        "ResourceSchemaUrl": col.const("", n),
        "ResourceAttributes": res.maps().take(pa.array(resource)),
        "ScopeSchemaUrl": col.const("", n),
        "ScopeName": col.choose(template, [t[2] for t in TEMPLATES]),
        "ScopeVersion": col.const("", n),
        "ScopeAttributes": col.attr_map({}, n),
        "LogAttributes": col.attr_map({}, n),
    }, n)
    counts = np.bincount(template, minlength=len(TEMPLATES))
    truth = [{"template": _masked(t), "severity": s, "count": int(c)}
             for (t, s, _), c in zip(TEMPLATES, counts, strict=True)]
    return table, truth


def _masked(template: str) -> str:
    return re.sub(r"\{[a-z0-9_]+\}", "<*>", template)


def _from_spans(spans: pa.Table, ctx: Context, rng: np.random.Generator) -> list[_Batch]:
    resource = ctx.resources.lookup(
        spans.column("ServiceName"),
        pc.map_lookup(spans.column("ResourceAttributes"), "service.version", "first"),
    )
    end = spans.column("EndNs").to_numpy()
    ms = (end - spans.column("StartNs").to_numpy()) / 1e6
    attrs = spans.column("SpanAttributes")
    code = pc.coalesce(pc.map_lookup(attrs, "http.response.status_code", "first"),
                       pc.map_lookup(attrs, "rpc.grpc.status_code", "first"), "0")
    server = np.asarray(pc.equal(spans.column("SpanKind"), SpanKind.SERVER.value))
    fields = {"name": spans.column("SpanName").combine_chunks(), "code": code.combine_chunks(),
              "ms": col.ints(np.rint(ms))}

    def rows(mask: np.ndarray[Any, Any], template: int, extra: dict[str, pa.Array]) -> _Batch:
        idx = np.flatnonzero(mask)
        pick = pa.array(idx)
        f = {k: v.take(pick) for k, v in {**fields, **extra}.items()}
        return _batch(template, end[idx], resource[idx], f,
                      spans.column("TraceId").take(pick).combine_chunks(),
                      spans.column("SpanId").take(pick).combine_chunks())

    # Median latency per (service, operation): slow means five times slower than usual.
    key = pc.binary_join_element_wise(spans.column("ServiceName"), spans.column("SpanName"), "/")
    groups = np.asarray(key.combine_chunks().dictionary_encode().indices)
    median = np.zeros(len(ms))
    order = np.argsort(groups[server], kind="stable")
    rows_of = np.flatnonzero(server)[order]
    bounds = np.flatnonzero(np.diff(groups[rows_of])) + 1
    for chunk in np.split(rows_of, bounds):
        if len(chunk):
            median[chunk] = np.median(ms[chunk])
    slow = server & (ms > 5 * median)
    sampled = server & (rng.random(len(ms)) < REQUEST_LOG_RATE)
    failed = np.asarray(pc.greater(pc.list_value_length(spans.column("Events")), 0))
    event = pc.list_flatten(spans.column("Events").filter(pa.array(failed))).combine_chunks()
    ev_attrs = event.field("Attributes")
    full = len(ms)
    pad = np.flatnonzero(failed)

    def widen(values: pa.Array) -> pa.Array:
        out = np.full(full, None, dtype=object)
        out[pad] = values.to_numpy(zero_copy_only=False)
        return pa.array(out, pa.string())

    errors = {"type": widen(pc.map_lookup(ev_attrs, "exception.type", "first")),
              "message": widen(pc.map_lookup(ev_attrs, "exception.message", "first"))}
    return [rows(sampled, 0, {}),
            rows(slow, 1, {"median": col.ints(np.rint(median))}),
            rows(failed, 2, errors)]


def _background(ctx: Context, rng: np.random.Generator) -> list[_Batch]:
    out = []
    window_s = (ctx.end_ns - ctx.start_ns) / 1e9
    for name in SERVICES:
        if name == "ci":
            continue
        resource = ctx.resources.of_service(name)
        for template, every_s in ((3, 15.0), (4, 60.0)):
            n = int(rng.poisson(window_s / every_s))
            ts = np.sort(rng.integers(ctx.start_ns, ctx.end_ns, n, dtype=np.int64))
            a, b, c = rng.integers(0, 20, n), rng.integers(0, 10, n), rng.poisson(0.3, n)
            fields = {"a": col.ints(a if template == 3 else rng.integers(55, 99, n)),
                      "b": col.ints(b), "c": col.ints(c)}
            out.append(_batch(template, ts, _versioned(resource, name, ts, ctx), fields))
    return out


def _versioned(base: int, service: str, ts: I64, ctx: Context) -> I64:
    out = np.full(len(ts), base, dtype=np.int64)
    d = ctx.plan.deploy
    if d and d.service == service:
        out[ts >= d.at_ns] = ctx.resources.of_service(service, d.new_version)
    return out


def _incidents(spans: pa.Table, agent_events: list[dict[str, Any]],
               ctx: Context) -> list[_Batch]:
    plan, res = ctx.plan, ctx.resources
    out: list[_Batch] = []
    if plan.deploy:
        d = plan.deploy
        for template, at, version in ((5, d.at_ns - 2_000_000_000, d.old_version),
                                      (6, d.at_ns, d.new_version)):
            out.append(_batch(template, np.array([at]), np.array([res.of_service(d.service, version)]),
                              {"service": col.const(d.service, 1), "version": col.const(version, 1)}))
    if plan.burst:
        b = plan.burst
        attrs = spans.column("SpanAttributes")
        hit = pc.and_(pc.equal(pc.map_lookup(attrs, b.attribute, "first"), b.value),
                      pc.equal(spans.column("SpanKind"), SpanKind.CLIENT.value))
        hit = pc.and_(hit, pc.equal(spans.column("StatusCode"), "Error"))
        sel = spans.filter(hit)
        n = sel.num_rows
        ts = sel.column("EndNs").to_numpy()
        out.append(_batch(7, ts, _versioned(res.of_service(b.service), b.service, ts, ctx), {
            "provider": col.const(b.value, n), "code": col.ints(np.full(n, b.status_code)),
            "n": col.const("1", n)}, sel.column("TraceId").combine_chunks(),
            sel.column("SpanId").combine_chunks()))
    if plan.swap:
        s = plan.swap
        ticks = np.arange(s.window.start_ns, s.window.end_ns, 30_000_000_000, dtype=np.int64)
        pct = col.ints(np.rint(100 * (0.03 + (s.peak_swap - 0.03) * swap_ramp(s, ticks))))
        for name, svc in SERVICES.items():
            if svc.host == s.host and s.host in HOSTS:
                out.append(_batch(8, ticks, np.full(len(ticks), res.of_service(name)),
                                  {"host": col.const(s.host, len(ticks)), "p": pct}))
    spawns = [e for e in agent_events if e["event"] == "spawn"]
    orch = res.of_service("orchestrator")
    ts = np.array([round(e["ts"] * 1e9) for e in spawns], dtype=np.int64)
    out.append(_batch(9, ts, np.full(len(ts), orch), {
        k: pa.array([str(e[k]) for e in spawns], pa.string())
        for k in ("worker", "model", "caste", "task")}))
    if plan.stuck:
        completed = {e["worker"] for e in agent_events if e["event"] == "complete"}
        for e in spawns:
            if e["worker"] in completed:
                continue
            spawned = round(e["ts"] * 1e9)
            ticks = np.arange(spawned + 120_000_000_000, ctx.end_ns, 60_000_000_000,
                              dtype=np.int64)
            out.append(_batch(10, ticks, np.full(len(ticks), orch), {
                "worker": col.const(e["worker"], len(ticks)),
                "s": col.ints((ticks - spawned) // 1_000_000_000)}))
    return out
