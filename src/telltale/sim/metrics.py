"""Metrics: host gauges every 10 s, and per-service request counters and latency histograms.

Host CPU follows the request load each host serves (server spans per 10 s), so metrics and
traces tell one story; the swap crisis ramps swap, memory and load on its host. Service metrics
are aggregated from the generated server spans themselves (per minute), so their counts and
bucket totals agree exactly with the traces.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import MetricType, SpanKind
from telltale.normalize.staging import METRICS
from telltale.sim import columns as col
from telltale.sim.ids import F64, I64
from telltale.sim.incidents import swap_ramp
from telltale.sim.spans import Context
from telltale.sim.topology import HOSTS, SERVICES

TICK_NS = 10_000_000_000
MINUTE_NS = 60_000_000_000
# Semantic-convention default bounds for http.server.request.duration (seconds).
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                   10.0)
# name, unit, attributes, base level per host
_GAUGES: tuple[tuple[str, str, dict[str, str], tuple[float, float, float]], ...] = (
    ("system.cpu.utilization", "1", {}, (0.18, 0.22, 0.15)),
    ("system.memory.utilization", "1", {"system.memory.state": "used"}, (0.52, 0.61, 0.48)),
    ("system.paging.utilization", "1", {"system.paging.state": "used"}, (0.02, 0.04, 0.03)),
    ("system.filesystem.utilization", "1",
     {"system.device": "/dev/nvme0n1p1", "system.filesystem.mountpoint": "/"},
     (0.41, 0.63, 0.55)),
    ("system.cpu.load_average.1m", "{thread}", {}, (0.8, 1.1, 0.7)),
)


def _server_spans(spans: pa.Table) -> pa.Table:
    """Server spans, with only the columns metrics need (filtering maps is costly)."""
    t = spans.select(["ServiceName", "SpanKind", "StartNs", "EndNs", "SpanAttributes"])
    return t.filter(pc.equal(t.column("SpanKind"), SpanKind.SERVER.value))


def host_gauges(spans: pa.Table, ctx: Context, rng: np.random.Generator) -> pa.Table:
    ticks = np.arange(ctx.start_ns + TICK_NS, ctx.end_ns + 1, TICK_NS, dtype=np.int64)
    n_t = len(ticks)
    served = _load_per_host(_server_spans(spans), ticks)
    values_out: list[F64] = []
    resources: list[I64] = []
    names: list[str] = []
    units: list[str] = []
    attr_rows: list[list[tuple[str, str]]] = []
    for h, host in enumerate(HOSTS):
        ramp = np.zeros(n_t)
        if ctx.plan.swap and ctx.plan.swap.host == host:
            ramp = swap_ramp(ctx.plan.swap, ticks)
        load = served[h] / max(served.max(), 1.0)
        for name, unit, attrs, bases in _GAUGES:
            v = _series(name, bases[h], load, ramp, rng, n_t,
                        ctx.plan.swap.peak_swap if ctx.plan.swap else 0.0)
            values_out.append(v)
            resources.append(np.full(n_t, ctx.resources.of_host(host), dtype=np.int64))
            names += [name] * n_t
            units += [unit] * n_t
            attr_rows += [sorted(attrs.items())] * n_t
    n = len(names)
    res = np.concatenate(resources)
    r = ctx.resources
    return col.table(METRICS[MetricType.GAUGE], {
        "Pos": col.positions("sim gauge ", n),
        "RecordBytes": pa.array(np.full(n, 64, dtype=np.int64)),
        "ResourceAttributes": r.maps().take(pa.array(res)),
        "ScopeName": r.scope_names().take(pa.array(res)),
        "ScopeVersion": r.scope_versions().take(pa.array(res)),
        "ServiceName": col.const("", n),
        "MetricName": pa.array(names, pa.string()),
        "MetricDescription": col.const("", n),
        "MetricUnit": pa.array(units, pa.string()),
        "Attributes": pa.array(attr_rows, METRICS[MetricType.GAUGE].field("Attributes").type),
        "StartTimeUnix": pa.array(np.full(n, ctx.start_ns, dtype=np.int64)),
        "TimeUnix": pa.array(np.tile(ticks, len(HOSTS) * len(_GAUGES))),
        "Flags": pa.array(np.zeros(n, dtype=np.int64)),
        "Value": pa.array(np.round(np.concatenate(values_out), 6)),
    }, n)


def _load_per_host(server: pa.Table, ticks: I64) -> F64:
    """Server spans started per tick on each host."""
    names = list(SERVICES)
    host_of = np.array([HOSTS.index(s.host) if s.host in HOSTS else -1
                        for s in SERVICES.values()] + [-1])
    which = pc.fill_null(pc.index_in(server.column("ServiceName"), pa.array(names)), len(names))
    host = host_of[np.asarray(which.combine_chunks() if isinstance(which, pa.ChunkedArray)
                              else which)]
    start = server.column("StartNs").to_numpy()
    tick = np.searchsorted(ticks, start, side="right")
    keep = (host >= 0) & (tick < len(ticks))
    counts = np.zeros((len(HOSTS), len(ticks)))
    np.add.at(counts, (host[keep], tick[keep]), 1.0)
    return counts


def _series(name: str, base: float, load: F64, ramp: F64, rng: np.random.Generator, n: int,
            peak_swap: float) -> F64:
    noise = _ar1(rng, n, 0.9, 0.015)
    if name == "system.cpu.utilization":
        v = base + 0.45 * load + noise + 0.25 * ramp  # iowait from swapping
    elif name == "system.memory.utilization":
        v = base + noise * 0.5 + (0.97 - base) * ramp
    elif name == "system.paging.utilization":
        v = base + np.abs(noise) * 0.2 + (peak_swap - base) * ramp
    elif name == "system.filesystem.utilization":
        v = base + np.linspace(0, 0.01, n) + noise * 0.05
    else:  # load average: a smoothed, unbounded count of runnable threads
        v = np.maximum(base + 3.0 * load + 10 * noise + 6.5 * ramp, 0.0)
        return np.asarray(v, dtype=np.float64)
    return np.clip(v, 0.0, 1.0)


def _ar1(rng: np.random.Generator, n: int, phi: float, scale: float) -> F64:
    shocks = rng.normal(0.0, scale, n)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):  # n is ticks per host (180 for 30 min): a loop is fine
        acc = phi * acc + shocks[i]
        out[i] = acc
    return out


def service_metrics(spans: pa.Table, ctx: Context) -> dict[MetricType, pa.Table]:
    """Per service and minute: cumulative request count (sum) and a latency histogram (delta).

    Only HTTP server spans count (those with `http.route`), as in the HTTP semantic conventions.
    """
    server = _server_spans(spans)
    server = server.filter(pc.is_valid(pc.map_lookup(server.column("SpanAttributes"),
                                                     "http.route", "first")))
    services = sorted(set(server.column("ServiceName").to_pylist()))
    svc = np.asarray(pc.index_in(server.column("ServiceName"), pa.array(services)))
    start = server.column("StartNs").to_numpy()
    secs = (server.column("EndNs").to_numpy() - start) / 1e9
    minutes = max(1, int(np.ceil((ctx.end_ns - ctx.start_ns) / MINUTE_NS)))
    minute = np.clip((start - ctx.start_ns) // MINUTE_NS, 0, minutes - 1)
    group = svc * minutes + minute
    g = len(services) * minutes
    count = np.bincount(group, minlength=g)
    total = np.bincount(group, weights=secs, minlength=g)
    nb = len(DURATION_BOUNDS) + 1
    bucket = np.searchsorted(np.array(DURATION_BOUNDS), secs, side="left")
    buckets = np.bincount(group * nb + bucket, minlength=g * nb).reshape(g, nb)
    lo = np.full(g, np.inf)
    hi = np.full(g, -np.inf)
    np.minimum.at(lo, group, secs)
    np.maximum.at(hi, group, secs)
    ends = ctx.start_ns + (np.arange(minutes, dtype=np.int64) + 1) * MINUTE_NS
    svc_g = np.repeat(np.arange(len(services)), minutes)
    end_g = np.tile(ends, len(services))
    res = np.array([_resource_at(services[s], int(t), ctx) for s, t in zip(svc_g, end_g,
                                                                          strict=True)])
    cumulative = np.cumsum(count.reshape(len(services), minutes), axis=1).ravel()
    common = _common(ctx, res, svc_g, services, end_g)
    sums = col.table(METRICS[MetricType.SUM], {
        **common, "Pos": col.positions("sim sum ", g),
        "MetricName": col.const("http.server.request.count", g),
        "MetricDescription": col.const("Number of HTTP server requests.", g),
        "MetricUnit": col.const("{request}", g),
        "StartTimeUnix": pa.array(np.full(g, ctx.start_ns, dtype=np.int64)),
        "Value": pa.array(cumulative.astype(np.float64)),
        "AggregationTemporality": pa.array(np.full(g, 2, dtype=np.int64)),
        "IsMonotonic": pa.array(np.ones(g, dtype=bool)),
    }, g)
    keep = np.flatnonzero(count > 0)  # delta histograms only for minutes with requests
    k = len(keep)
    kc = {name: arr.take(pa.array(keep)) for name, arr in common.items()}
    hist = col.table(METRICS[MetricType.HISTOGRAM], {
        **kc, "Pos": col.positions("sim histogram ", k),
        "MetricName": col.const("http.server.request.duration", k),
        "MetricDescription": col.const("Duration of HTTP server requests.", k),
        "MetricUnit": col.const("s", k),
        "StartTimeUnix": pa.array(end_g[keep] - MINUTE_NS),
        "Count": pa.array(count[keep].astype(np.uint64)),
        "Sum": pa.array(np.round(total[keep], 9)),
        "BucketCounts": col.lists(col.offsets_from_lengths(np.full(k, nb)),
                                  pa.array(buckets[keep].ravel().astype(np.uint64))),
        "ExplicitBounds": col.lists(col.offsets_from_lengths(np.full(k, nb - 1)),
                                    pa.array(np.tile(DURATION_BOUNDS, k))),
        "Min": pa.array(lo[keep]), "Max": pa.array(hi[keep]),
        "AggregationTemporality": pa.array(np.full(k, 1, dtype=np.int64)),
    }, k)
    return {MetricType.SUM: sums, MetricType.HISTOGRAM: hist}


def _resource_at(service: str, t: int, ctx: Context) -> int:
    d = ctx.plan.deploy
    if d and d.service == service and t > d.at_ns:
        return ctx.resources.of_service(service, d.new_version)
    return ctx.resources.of_service(service)


def _common(ctx: Context, res: I64, svc: I64, services: list[str],
            end: I64) -> dict[str, pa.Array]:
    r = ctx.resources
    n = len(res)
    empty = pa.array([[]] * n, METRICS[MetricType.SUM].field("Attributes").type)
    return {
        "RecordBytes": pa.array(np.full(n, 96, dtype=np.int64)),
        "ResourceAttributes": r.maps().take(pa.array(res)),
        "ScopeName": r.scope_names().take(pa.array(res)),
        "ScopeVersion": r.scope_versions().take(pa.array(res)),
        "ServiceName": pa.array(services, pa.string()).take(pa.array(svc)),
        "Attributes": empty,
        "TimeUnix": pa.array(end),
        "Flags": pa.array(np.zeros(n, dtype=np.int64)),
    }
