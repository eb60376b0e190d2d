"""Service traces: every request of a flow instantiated at once, node by node, with numpy.

For a flow with K template nodes and N requests the generator holds (K, N) arrays: presence,
self time, own failure. Durations and error propagation go bottom-up (a parent lasts its own
time plus its synchronous children, and fails when a non-absorbing child fails); start times
go top-down, children one after another (or together for parallel fan-out) inside the parent,
so every synchronous child lies within its parent's time range by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import SpanKind
from telltale.sim import columns as col
from telltale.sim.ids import F64, I64, Bools, IdAllocator
from telltale.sim.incidents import IncidentPlan, swap_ramp
from telltale.sim.spans import Context, SpanChunk
from telltale.sim.templates import STATUS, ChoiceVar, FlatNode, Flow, IntVar, Node, db_query, flatten
from telltale.sim.topology import SERVICES

U2 = npt.NDArray[np.uint64]  # (K, N) ids


def generate(flows: list[Flow], rate_per_s: float, ctx: Context,
             rng: np.random.Generator) -> list[SpanChunk]:
    """Poisson arrivals over the window, each assigned to a flow by weight."""
    n = int(rng.poisson(rate_per_s * (ctx.end_ns - ctx.start_ns) / 1e9))
    arrivals = np.sort(rng.integers(ctx.start_ns, ctx.end_ns, n, dtype=np.int64))
    weights = np.array([f.weight for f in flows])
    which = rng.choice(len(flows), n, p=weights / weights.sum())
    # The N+1 incident draws from its own stream and id space (spawned, which leaves `rng`'s
    # own sequence untouched), so every other span keeps its times and ids.
    extra = _Extra(rng.spawn(1)[0])
    chunks: list[SpanChunk] = []
    for i, flow in enumerate(flows):
        chunks += _instantiate(flow, arrivals[which == i], ctx, rng, extra)
    return chunks


class _Extra:
    """Randomness and span ids of the N+1 incident, apart from the main stream's."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.span_ids = IdAllocator(int(rng.integers(2**31)), "n_plus_one")


@dataclass
class _Repeats:
    """The N+1 incident in one flow: node `k` runs `count[i]` single-row queries in request i."""

    k: int
    node: Node  # the repeated query's template
    count: I64  # per request; 0 where not affected
    weight: F64  # per query, grouped by request in order: its part of the loop's time
    share: float  # of the step's own time the loop takes


@dataclass
class _Batch:
    """(K nodes, N requests) arrays for one flow; row k belongs to template node k."""

    nodes: list[FlatNode]
    t0: I64  # request arrival, ns
    values: dict[str, pa.Array]  # per-request variable values, as strings
    codes: dict[str, I64]  # choice index of each ChoiceVar
    present: npt.NDArray[np.bool_]
    self_ns: npt.NDArray[np.int64]  # own time (duration minus synchronous children)
    fail: npt.NDArray[np.bool_]  # the span itself failed (error origin)
    burst: npt.NDArray[np.bool_]  # ... because of the error-burst incident
    factor: npt.NDArray[np.float64]  # incident slow-down of the whole span
    dur: npt.NDArray[np.int64]
    err: npt.NDArray[np.bool_]  # failed itself or through a failing child

    def var_is(self, flow: Flow, name: str, value: str) -> Bools:
        var = flow.variables[name]
        assert isinstance(var, ChoiceVar)
        return np.asarray(self.codes[name] == var.values.index(value), dtype=bool)


def _instantiate(flow: Flow, t0: I64, ctx: Context, rng: np.random.Generator,
                 extra: _Extra) -> list[SpanChunk]:
    b = _draw(flow, t0, ctx.plan, rng)
    repeats = _draw_repeats(b, ctx.plan, extra.rng)
    _durations(b)
    start, thi, tlo, sid = _layout(b, ctx, rng)
    emitted = b.present.copy()
    if ctx.plan.orphans:
        # The callers' client spans towards the service are lost: its server spans orphan.
        lost = ctx.plan.orphans.window.contains(t0)
        for flat in b.nodes:
            if flat.node.service == ctx.plan.orphans.service and flat.node.kind is SpanKind.SERVER:
                emitted[flat.parent] &= ~lost
    chunks = []
    for k, flat in enumerate(b.nodes):
        idx = np.flatnonzero(emitted[k])
        if len(idx) == 0:
            continue
        values = {name: v.take(pa.array(idx)) for name, v in b.values.items()}
        chunk = _chunk(flat, idx, values, t0[idx], start[k][idx], b.dur[k][idx],
                       b.fail[k][idx], b.err[k][idx], b.burst[k][idx], ctx)
        chunk.trace_hi, chunk.trace_lo, chunk.span_id = thi[k][idx], tlo[k][idx], sid[k][idx]
        if flat.parent >= 0:
            parent_sid = sid[flat.parent][idx]
            if flat.node.async_link:
                chunk.link_hi, chunk.link_lo = thi[flat.parent][idx], tlo[flat.parent][idx]
                chunk.link_span = parent_sid
            else:
                chunk.parent_id = parent_sid
        chunks.append(chunk)
    if repeats is not None:
        chunks.append(_repeat_chunk(repeats, b, emitted[repeats.k], start, (thi, tlo, sid), ctx,
                                    extra.span_ids))
    return chunks


def _draw_repeats(b: _Batch, plan: IncidentPlan, rng: np.random.Generator) -> _Repeats | None:
    """Which requests of this flow loop one query per item, and how many times."""
    n1 = plan.n_plus_one
    if n1 is None:
        return None
    k = next((i for i, f in enumerate(b.nodes)
              if f.node.service == n1.service and f.node.name == n1.parent), None)
    if k is None:
        return None
    n = len(b.t0)
    hit = b.present[k] & n1.window.contains(b.t0) & (rng.random(n) < n1.share)
    count = np.where(hit, rng.integers(n1.min_repeats, n1.max_repeats + 1, n), 0)
    node = db_query(n1.service, "SELECT", n1.table, n1.query, n1.median_ms, p_error=0.0)
    weight = rng.lognormal(0.0, 0.4, int(count.sum()))
    return _Repeats(k, node, count.astype(np.int64), weight, n1.time_share)


def _repeat_chunk(r: _Repeats, b: _Batch, emitted: Bools, start: npt.NDArray[np.int64],
                  ids: tuple[U2, U2, U2], ctx: Context, span_ids: IdAllocator) -> SpanChunk:
    """The loop's queries, back to back after the step's other children, inside the step's own
    time (no span's duration changes: the step's time is spent in the loop instead)."""
    thi, tlo, sid = ids
    k, n = r.k, len(b.t0)
    owner = np.repeat(np.arange(n), r.count)
    first = np.repeat(np.cumsum(r.count) - r.count, r.count)  # each request's first query
    per_request = np.zeros(n)
    np.add.at(per_request, owner, r.weight)
    # The step's other children end within 60 % of its own time (see _layout): the loop takes
    # (at most 39 % of) the rest, ending just before the step does.
    loop = (b.self_ns[k] * min(r.share, 0.39)).astype(np.int64)
    dur = np.floor(loop[owner] * r.weight / per_request[owner]).astype(np.int64)
    before = np.cumsum(dur) - dur
    end = start[k] + b.dur[k] - b.self_ns[k] // 100
    q_start = (end - loop)[owner] + before - before[first]
    keep = emitted[owner]
    owner, q_start, dur = owner[keep], q_start[keep], dur[keep]
    q = len(owner)
    none = np.zeros(q, dtype=bool)
    chunk = _chunk(FlatNode(r.node, k), np.arange(q), {}, b.t0[owner], q_start, dur, none, none,
                   none, ctx)
    chunk.trace_hi, chunk.trace_lo = thi[k][owner], tlo[k][owner]
    chunk.span_id, chunk.parent_id = span_ids.take(q), sid[k][owner]
    return chunk


def _draw(flow: Flow, t0: I64, plan: IncidentPlan, rng: np.random.Generator) -> _Batch:
    """Variables, presence, own time, own failure and slow-down of every node × request."""
    nodes = flatten(flow.root)
    k_count, n = len(nodes), len(t0)
    values: dict[str, pa.Array] = {}
    codes: dict[str, I64] = {}
    for name, var in flow.variables.items():
        if isinstance(var, IntVar):
            values[name] = col.ints(rng.integers(var.lo, var.hi + 1, n))
        else:
            w = np.array(var.weights)
            codes[name] = rng.choice(len(var.values), n, p=w / w.sum())
            values[name] = col.choose(codes[name], var.values)
    shape = (k_count, n)
    b = _Batch(nodes, t0, values, codes, np.zeros(shape, bool), np.zeros(shape, np.int64),
               np.zeros(shape, bool), np.zeros(shape, bool), np.ones(shape),
               np.zeros(shape, np.int64), np.zeros(shape, bool))
    for k, flat in enumerate(nodes):
        node = flat.node
        here = np.ones(n, dtype=bool) if flat.parent < 0 else b.present[flat.parent].copy()
        if node.p < 1:
            here &= rng.random(n) < node.p
        if node.when is not None:
            here &= b.var_is(flow, *node.when)
        b.present[k] = here
        b.self_ns[k] = np.rint(col.lognormal_ns(rng, node.median_ms, node.sigma, n))
        p_error = np.full(n, node.p_error)
        if plan.burst and node.burst_target:
            b.burst[k] = plan.burst.window.contains(t0) & b.var_is(
                flow, plan.burst.variable, plan.burst.value)
            p_error[b.burst[k]] = plan.burst.p_error
        b.fail[k] = here & (rng.random(n) < p_error)
        b.burst[k] &= b.fail[k]
        b.factor[k] = _slowdown(flat, t0, plan)
    return b


def _durations(b: _Batch) -> None:
    """Bottom-up: a span lasts its own time plus its synchronous children (all of them in
    sequence, the longest when parallel) and fails when a non-absorbing child fails. Queue
    consumers run after their producer, outside its time."""
    b.err[:] = b.fail
    for k in reversed(range(len(b.nodes))):
        flat = b.nodes[k]
        sync = [c for c in flat.children if not b.nodes[c].node.async_link]
        kids = np.zeros(len(b.t0), dtype=np.int64)
        if sync:
            child_durs = np.stack([b.dur[c] * b.present[c] for c in sync])
            kids = child_durs.max(axis=0) if flat.node.parallel else child_durs.sum(axis=0)
        for c in sync:
            if not b.nodes[c].node.absorbs:
                b.err[k] |= b.err[c] & b.present[c]
        base = b.self_ns[k] + kids
        extra = np.rint(base * (b.factor[k] - 1.0)).astype(np.int64)
        b.self_ns[k] += extra  # a regression is the span's own time, not its callees'
        b.dur[k] = base + extra


def _layout(b: _Batch, ctx: Context, rng: np.random.Generator
            ) -> tuple[npt.NDArray[np.int64], U2, U2, U2]:
    """Top-down: start times (children after a slice of the parent's own time) and ids."""
    k_count, n = len(b.nodes), len(b.t0)
    start = np.zeros((k_count, n), dtype=np.int64)
    start[0] = b.t0
    sid = np.stack([ctx.span_ids.take(n) for _ in range(k_count)])
    thi = np.zeros((k_count, n), dtype=np.uint64)
    tlo = np.zeros((k_count, n), dtype=np.uint64)
    thi[0], tlo[0] = ctx.trace_ids.take(n)
    for k, flat in enumerate(b.nodes):
        cursor = start[k] + (b.self_ns[k] * rng.uniform(0.15, 0.6, n)).astype(np.int64)
        for c in flat.children:
            if b.nodes[c].node.async_link:
                queue = np.rint(col.lognormal_ns(rng, 12.0, 0.9, n)).astype(np.int64)
                start[c] = start[k] + b.dur[k] + queue
                thi[c], tlo[c] = ctx.trace_ids.take(n)
            else:
                start[c] = cursor
                thi[c], tlo[c] = thi[k], tlo[k]
                if not flat.node.parallel:
                    cursor = cursor + b.dur[c] * b.present[c]
    return start, thi, tlo, sid


def _slowdown(flat: FlatNode, t0: I64, plan: IncidentPlan) -> F64:
    """Multiplier on a node's duration from the deploy regression and the swap crisis."""
    node = flat.node
    out = np.ones(len(t0))
    serving = node.kind in (SpanKind.SERVER, SpanKind.CONSUMER)
    if plan.deploy and node.service == plan.deploy.service and node.kind is SpanKind.SERVER:
        out[t0 >= plan.deploy.at_ns] = plan.deploy.factor
    if plan.swap and serving and SERVICES[node.service].host == plan.swap.host:
        out *= 1.0 + (plan.swap.latency_factor - 1.0) * swap_ramp(plan.swap, t0)
    return out


def _chunk(flat: FlatNode, idx: I64, values: dict[str, pa.Array], t0: I64, start: I64,
           dur: I64, fail: Bools, err: Bools, burst: Bools, ctx: Context) -> SpanChunk:
    """Columns of one node's emitted spans (ids and links are filled in by the caller)."""
    node, plan = flat.node, ctx.plan
    n = len(idx)
    code = np.where(err, node.error_code, node.ok_code)
    origin_type = col.const(node.error_type, n)
    message = col.render(node.error_message, values, n)
    if plan.burst:
        code = np.where(burst, plan.burst.status_code, code)
        origin_type = col.where(burst, "ProviderUnavailableError", origin_type, n)
        burst_msg = f"{plan.burst.value}: {plan.burst.status_code} Service Unavailable"
        message = col.where(burst, burst_msg, message, n)
    values = {**values, "status": col.ints(code)}
    attrs = {key: col.render(tpl, values, n) for key, tpl in node.attrs.items()}
    # semconv error.type: the exception type where it failed, the status code upstream of it.
    upstream = col.ints(code) if STATUS in node.attrs.values() else col.const("_OTHER", n)
    attrs["error.type"] = pc.if_else(pa.array(err), col.where(fail, origin_type, upstream, n),
                                     col.NULL)
    resource = np.full(n, ctx.resources.of_service(node.service), dtype=np.int64)
    if plan.deploy and node.service == plan.deploy.service:
        resource[t0 >= plan.deploy.at_ns] = ctx.resources.of_service(
            node.service, plan.deploy.new_version)
    fail_arr = pa.array(fail)
    zero = np.zeros(n, dtype=np.uint64)
    return SpanChunk(
        start=start, end=start + dur, trace_hi=zero, trace_lo=zero, span_id=zero,
        parent_id=zero, resource=resource, name=col.const(node.name, n),
        kind=col.const(node.kind.value, n), attrs=col.attr_map(attrs, n),
        status=np.where(err, 2, 0).astype(np.int8),
        status_message=col.where(fail, message, "", n),
        event_type=pc.if_else(fail_arr, origin_type, col.NULL),
        event_message=pc.if_else(fail_arr, message, col.NULL),
        link_hi=zero, link_lo=zero, link_span=zero,
    )
