"""Span chunks (one per template node or generator) and their assembly into the staged table.

Generators keep ids as integers and times as int64 ns until the very end; `assemble` sorts all
chunks once (service, start, id), turns ids into hex strings in one pass and builds the
`staging.SPANS` columns, including the exception events and producer links.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import StatusCode
from telltale.normalize.staging import ATTRS, EVENT, LINK, SPANS
from telltale.sim import columns as col
from telltale.sim.ids import I64, U64, IdAllocator, TraceIds, span_id_strings, trace_id_strings
from telltale.sim.incidents import IncidentPlan
from telltale.sim.topology import Resources

I8 = npt.NDArray[np.int8]
# OTLP status numbering: 0 unset, 1 ok, 2 error.
STATUS_NAMES = [StatusCode.UNSET.value, StatusCode.OK.value, StatusCode.ERROR.value]


@dataclass
class Context:
    """What every generator shares: the plan, resources and the id spaces."""

    start_ns: int
    end_ns: int
    plan: IncidentPlan
    resources: Resources
    span_ids: IdAllocator
    trace_ids: TraceIds


@dataclass
class SpanChunk:
    """Columns of n spans. Zero ids mean "none" (root parent, no link)."""

    start: I64
    end: I64
    trace_hi: U64
    trace_lo: U64
    span_id: U64
    parent_id: U64
    resource: I64  # index into Resources
    name: pa.Array
    kind: pa.Array
    attrs: pa.Array  # map<string, string>
    status: I8
    status_message: pa.Array
    event_type: pa.Array  # exception.type of the one exception event; null = no event
    event_message: pa.Array
    link_hi: U64
    link_lo: U64
    link_span: U64

    def __len__(self) -> int:
        return len(self.start)


def plain_chunk(start: I64, end: I64, trace_hi: U64, trace_lo: U64, span_id: U64,
                parent_id: U64, resource: I64, name: pa.Array, kind: pa.Array, attrs: pa.Array,
                status: I8, status_message: pa.Array) -> SpanChunk:
    """A chunk of spans without events or links."""
    n = len(start)
    event_type, event_message = no_events(n)
    link_hi, link_lo, link_span = no_links(n)
    return SpanChunk(start, end, trace_hi, trace_lo, span_id, parent_id, resource, name, kind,
                     attrs, status, status_message, event_type, event_message, link_hi, link_lo,
                     link_span)


def no_links(n: int) -> tuple[U64, U64, U64]:
    zero = np.zeros(n, dtype=np.uint64)
    return zero, zero.copy(), zero.copy()


def no_events(n: int) -> tuple[pa.Array, pa.Array]:
    return pa.nulls(n, pa.string()), pa.nulls(n, pa.string())


def assemble(chunks: list[SpanChunk], resources: Resources, pos: str = "sim span ") -> pa.Table:
    """One staged spans table, sorted by (service, start, span id); `Pos` is `pos` + row."""
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return SPANS.empty_table()
    start = np.concatenate([c.start for c in chunks])
    span_id = np.concatenate([c.span_id for c in chunks])
    resource = np.concatenate([c.resource for c in chunks])
    order = np.lexsort((span_id, start, resources.service_rank[resource]))
    take = pa.array(order)

    def num(field: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(c, field) for c in chunks])[order]

    def arrow(field: str) -> pa.Array:
        return pa.concat_arrays([getattr(c, field) for c in chunks]).take(take)

    n = len(order)
    start, end, resource = start[order], num("end"), resource[order]
    name, attrs = arrow("name"), arrow("attrs")
    link_span = num("link_span")
    return col.table(SPANS, {
        "Pos": col.positions(pos, n),
        "RecordBytes": pa.array(col.utf8_lengths(name) + col.map_bytes(attrs)),
        "StartNs": pa.array(start),
        "EndNs": pa.array(end),
        "TraceId": trace_id_strings(num("trace_hi"), num("trace_lo")),
        "SpanId": span_id_strings(span_id[order]),
        "ParentSpanId": span_id_strings(num("parent_id")),
        "TraceState": col.const("", n),
        "SpanName": name,
        "SpanKind": arrow("kind"),
        "ServiceName": resources.service_names().take(pa.array(resource)),
        "ResourceAttributes": resources.maps().take(pa.array(resource)),
        "ScopeName": resources.scope_names().take(pa.array(resource)),
        "ScopeVersion": resources.scope_versions().take(pa.array(resource)),
        "SpanAttributes": attrs,
        "StatusCode": col.choose(num("status"), STATUS_NAMES),
        "StatusMessage": arrow("status_message"),
        "Events": _events(arrow("event_type"), arrow("event_message"), end),
        "Links": _links(num("link_hi"), num("link_lo"), link_span),
    }, n)


def _events(types: pa.Array, messages: pa.Array, end: I64) -> pa.Array:
    """At most one `exception` event per span, at the span's end."""
    has = np.asarray(types.is_valid())
    idx = pa.array(np.flatnonzero(has))
    k = len(idx)
    attrs = col.attr_map(
        {"exception.type": types.take(idx), "exception.message": messages.take(idx)}, k
    )
    events = pa.StructArray.from_arrays(
        [pa.array(end[has]), col.const("exception", k), attrs], fields=list(EVENT)
    )
    return col.lists(col.offsets_from_lengths(has.astype(np.int32)), events).cast(
        pa.list_(EVENT)
    )


def _links(hi: U64, lo: U64, span: U64) -> pa.Array:
    """At most one link per span: a queue consumer's link to the producer span."""
    has = span != 0
    k = int(has.sum())
    empty = pa.MapArray.from_arrays(
        np.zeros(k + 1, dtype=np.int32), pa.array([], pa.string()), pa.array([], pa.string())
    ).cast(ATTRS)
    links = pa.StructArray.from_arrays(
        [trace_id_strings(hi[has], lo[has]), span_id_strings(span[has]), col.const("", k), empty],
        fields=list(LINK),
    )
    return col.lists(col.offsets_from_lengths(has.astype(np.int32)), links).cast(pa.list_(LINK))


def orphan_mask(spans: pa.Table) -> npt.NDArray[np.bool_]:
    """Spans whose parent id is set but absent from the table (within the same trace)."""
    parent = spans.column("ParentSpanId")
    has_parent = pc.not_equal(parent, "")
    known = pc.is_in(
        pc.binary_join_element_wise(spans.column("TraceId"), parent, "/"),
        value_set=pc.binary_join_element_wise(
            spans.column("TraceId"), spans.column("SpanId"), "/"
        ).combine_chunks(),
    )
    return np.asarray(pc.and_(has_parent, pc.invert(known)).combine_chunks())
