"""OTLP/JSON writers in the Collector file exporter's shape: one Export*ServiceRequest per line.

Spans and log records are rendered column-wise: each JSON fragment (an attribute, a span, a
resource block, a line) is one Arrow string-concatenation over all rows, and lists are joined
with list offsets, so millions of spans render at C speed. The OTLP JSON mapping is followed:
lower-case hex ids, enums as integers, 64-bit integers as strings, typed AnyValues (per-key
types from the topology), default values omitted. Metrics are few: their JSON is the
protobuf JSON mapping of the requests `write_proto` builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import SpanKind, StatusCode
from telltale.sim import columns as col
from telltale.sim.topology import BOOL_KEYS, DOUBLE_KEYS, INT_KEYS

SPANS_PER_LINE = 500
_BATCH_ROWS = 200_000  # keeps each rendered batch far below Arrow's 2 GiB string limit
_NEEDS_ESCAPE = r'["\\\x00-\x1f\x7f]'
Offsets = npt.NDArray[np.int64]


def quote(values: pa.Array) -> pa.Array:
    """JSON string literals; the rare value needing escapes is escaped by orjson."""
    values = pc.fill_null(values, "")
    quoted = pc.binary_join_element_wise('"', values, '"', "")
    needs = pc.match_substring_regex(values, _NEEDS_ESCAPE)
    if not pc.any(needs).as_py():
        return quoted
    escaped = [orjson.dumps(v).decode() for v in values.filter(needs).to_pylist()]
    return pc.replace_with_mask(quoted, needs, pa.array(escaped, pa.string()))


def _join(offsets: npt.NDArray[np.integer], fragments: pa.Array, sep: str = ",") -> pa.Array:
    return pc.binary_join(col.lists(np.asarray(offsets, dtype=np.int32), fragments), sep)


def attributes(maps: pa.Array) -> pa.Array:
    """`[{"key":..,"value":{..}}, ...]` per row of a map<string,string> column."""
    offsets, keys, items = col.map_parts(maps)
    n = len(keys)
    value = col.concat(['{"stringValue":', quote(items), "}"], n)
    # Typed keys, when the value really has that type (anything else stays a string).
    for typed, template, shape in (
        (INT_KEYS, '{"intValue":"%s"}', r"^-?[0-9]+$"),
        (DOUBLE_KEYS, '{"doubleValue":%s}', r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"),
        (BOOL_KEYS, '{"boolValue":%s}', r"^(true|false)$"),
    ):
        mask = pc.and_(pc.is_in(keys, pa.array(sorted(typed), pa.string())),
                       pc.match_substring_regex(items, shape))
        if pc.any(mask).as_py():
            before, after = template.split("%s")
            value = pc.if_else(mask, col.concat([before, items, after], n), value)
    fragments = col.concat(['{"key":', quote(keys), ',"value":', value, "}"], n)
    return col.concat(["[", _join(offsets, fragments), "]"], len(offsets) - 1)


def _optional(mask: pa.Array, pieces: list[str | pa.Array], n: int) -> pa.Array:
    return pc.if_else(mask, col.concat(pieces, n), "")


def _span_json(t: pa.Table) -> pa.Array:
    n = t.num_rows
    c = {name: t.column(name).combine_chunks() for name in t.column_names}
    parent = c["ParentSpanId"].fill_null("")
    kind = pc.cast(pc.fill_null(pc.index_in(c["SpanKind"], pa.array([k.value for k in SpanKind])),
                                0), pa.string())
    status = pc.fill_null(pc.index_in(c["StatusCode"], pa.array([s.value for s in StatusCode])), 0)
    message = c["StatusMessage"].fill_null("")
    status_json = pc.if_else(
        pc.equal(status, 0), "{}",
        col.concat(['{"code":', pc.cast(status, pa.string()),
                    _optional(pc.not_equal(message, ""), [',"message":', quote(message)], n),
                    "}"], n))
    state = c["TraceState"].fill_null("")
    return col.concat([
        '{"traceId":"', c["TraceId"], '","spanId":"', c["SpanId"], '"',
        _optional(pc.not_equal(state, ""), [',"traceState":', quote(state)], n),
        _optional(pc.not_equal(parent, ""), [',"parentSpanId":"', parent, '"'], n),
        ',"name":', quote(c["SpanName"]), ',"kind":', kind,
        ',"startTimeUnixNano":"', pc.cast(c["StartNs"], pa.string()),
        '","endTimeUnixNano":"', pc.cast(c["EndNs"], pa.string()),
        '","attributes":', attributes(c["SpanAttributes"]),
        _nested(c["Events"], "events", _event_json),
        _nested(c["Links"], "links", _link_json),
        ',"status":', status_json, "}",
    ], n)


def _nested(lists: pa.Array, name: str, render: Callable[[pa.Array], pa.Array]) -> pa.Array:
    offsets, values, _ = col.map_parts(lists)
    n = len(offsets) - 1
    if len(values) == 0:
        return col.const("", n)
    joined = _join(offsets, render(values))
    return _optional(pc.greater(pc.list_value_length(lists), 0),
                     [f',"{name}":[', joined, "]"], n)


def _event_json(events: pa.Array) -> pa.Array:
    field = pc.struct_field
    return col.concat(['{"timeUnixNano":"', pc.cast(field(events, "Timestamp"), pa.string()),
                       '","name":', quote(field(events, "Name")), ',"attributes":',
                       attributes(field(events, "Attributes")), "}"], len(events))


def _link_json(links: pa.Array) -> pa.Array:
    field = pc.struct_field
    return col.concat(['{"traceId":"', field(links, "TraceId"), '","spanId":"',
                       field(links, "SpanId"), '","attributes":',
                       attributes(field(links, "Attributes")), "}"], len(links))


def _log_json(t: pa.Table) -> pa.Array:
    n = t.num_rows
    c = {name: t.column(name).combine_chunks() for name in t.column_names}
    trace, span = c["TraceId"].fill_null(""), c["SpanId"].fill_null("")
    return col.concat([
        '{"timeUnixNano":"', pc.cast(c["Timestamp"], pa.string()),
        '","observedTimeUnixNano":"', pc.cast(c["ObservedTimestamp"], pa.string()),
        '","severityNumber":', pc.cast(c["SeverityNumber"], pa.string()),
        ',"severityText":', quote(c["SeverityText"]),
        ',"body":{"stringValue":', quote(c["Body"]), '},"attributes":',
        attributes(c["LogAttributes"]),
        _optional(pc.greater(c["TraceFlags"].fill_null(0), 0),
                  [',"flags":', pc.cast(c["TraceFlags"], pa.string())], n),
        _optional(pc.not_equal(trace, ""), [',"traceId":"', trace, '"'], n),
        _optional(pc.not_equal(span, ""), [',"spanId":"', span, '"'], n),
        "}",
    ], n)


def _changes(values: pa.Array) -> npt.NDArray[np.bool_]:
    """Rows whose value differs from the previous row's (row 0 counts as a change)."""
    out = np.ones(len(values), dtype=bool)
    if len(values) > 1:
        out[1:] = np.asarray(pc.not_equal(values.slice(1), values.slice(0, len(values) - 1)))
    return out


def _map_changes(maps: pa.Array) -> npt.NDArray[np.bool_]:
    """Like `_changes` for map rows, comparing entries pairwise (no per-row rendering)."""
    offsets, keys, items = col.map_parts(maps)
    lengths = np.diff(offsets)
    out = np.ones(len(lengths), dtype=bool)
    rows = np.flatnonzero(lengths[1:] == lengths[:-1]) + 1
    out[rows] = False
    count = lengths[rows]
    if count.sum() == 0:
        return out
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    entry = pa.array(np.repeat(offsets[rows], count) + within)
    partner = pa.array(np.repeat(offsets[rows - 1], count) + within)
    same = pc.and_(pc.equal(keys.take(entry), keys.take(partner)),
                   pc.equal(items.take(entry), items.take(partner)))
    out[np.repeat(rows, count)[~np.asarray(same)]] = True
    return out


def resource_runs(t: pa.Table) -> npt.NDArray[np.bool_]:
    """Where a new run of rows with the same (resource, scope) starts."""
    scope = col.concat([t.column("ScopeName").combine_chunks().fill_null(""), "\x00",
                        t.column("ScopeVersion").combine_chunks().fill_null("")], t.num_rows)
    return _changes(scope) | _map_changes(t.column("ResourceAttributes"))


def line_offsets(run_starts: npt.NDArray[np.bool_], per_line: int) -> Offsets:
    """Line boundaries: every resource run starts a line, and lines hold at most per_line."""
    run_id = np.cumsum(run_starts) - 1
    first = np.flatnonzero(run_starts)
    position = np.arange(len(run_starts)) - first[run_id]
    return np.asarray(np.r_[np.flatnonzero(position % per_line == 0), len(run_starts)],
                      dtype=np.int64)


def render_lines(t: pa.Table, offsets: Offsets, signal: str,
                 runs: npt.NDArray[np.bool_] | None = None) -> pa.Array:
    """One request JSON per line; a line may hold several resources (one block per run)."""
    records = _span_json(t) if signal == "traces" else _log_json(t)
    starts = resource_runs(t) if runs is None else runs.copy()
    starts[offsets[:-1]] = True  # a line always opens a resource block
    firsts = np.flatnonzero(starts)
    run_bounds = np.r_[firsts, t.num_rows]
    inner = _join(run_bounds, records)
    pick = pa.array(firsts)
    outer, scoped, items = {"traces": ("resourceSpans", "scopeSpans", "spans"),
                            "logs": ("resourceLogs", "scopeLogs", "logRecords")}[signal]
    blocks = col.concat([
        '{"resource":{"attributes":',
        attributes(t.column("ResourceAttributes").combine_chunks().take(pick)),
        '},"', scoped, '":[{"scope":{"name":',
        quote(t.column("ScopeName").combine_chunks().take(pick)), ',"version":',
        quote(t.column("ScopeVersion").combine_chunks().take(pick)), '},"', items, '":[',
        inner, "]}]}",
    ], len(firsts))
    per_line = np.searchsorted(firsts, offsets)
    return col.concat([f'{{"{outer}":[', _join(per_line, blocks), "]}"], len(offsets) - 1)


def batches(offsets: Offsets) -> Iterator[tuple[int, int]]:
    """(first line, end line) groups of about _BATCH_ROWS rows each."""
    first = 0
    lines = len(offsets) - 1
    while first < lines:
        end = int(np.searchsorted(offsets, offsets[first] + _BATCH_ROWS, side="right")) - 1
        end = max(end, first + 1)
        yield first, min(end, lines)
        first = end


def write_lines(out: IO[bytes], lines: pa.Array) -> None:
    if len(lines):
        joined = pc.binary_join(col.lists(np.array([0, len(lines)], np.int32), lines), "\n")
        out.write(joined[0].as_buffer())
        out.write(b"\n")


def write_table(t: pa.Table, path: Path, signal: str, per_line: int = SPANS_PER_LINE) -> Path:
    if t.num_rows == 0:
        path.write_bytes(b"")
        return path
    runs = resource_runs(t)
    offsets = line_offsets(runs, per_line)
    with path.open("wb") as out:
        for first, end in batches(offsets):
            lo, hi = int(offsets[first]), int(offsets[end])
            write_lines(out, render_lines(t.slice(lo, hi - lo), offsets[first:end + 1] - lo,
                                          signal, runs[lo:hi]))
    return path
