"""Decode JSON-lines events into spans through a field mapping (see docs/mapping.md).

Any log of "something happened, took this long, ended like this" becomes spans: an
agent-spawn log, a job runner's log, an audit trail. Lines are small and varied, so this is a
per-line loop over orjson. Each line is one span, unless several lines share a merge key
(`merge_by`, by default the span id field): then they are one unit of work, such as a worker's
`spawn` and `complete` lines, and become one span (see event_merge.py). When the events carry
no ids, ids are derived by hashing, so re-ingesting the same file gives the same spans (and the
store's content hash dedups it).

The time helpers here (`UNITS`, `time_ns`, `iso_to_ns`, `unit_from_name`, `unit_from_magnitude`)
are shared with the CSV decoder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telltale.model import QuarantineReason, Signal, SpanKind, StatusCode
from telltale.normalize import json_lines, staging
from telltale.normalize.event_merge import Collector, LineTimes, MergeByError, merge_fields
from telltale.normalize.fields import (
    INT64_MAX,
    TIME_UNITS,
    UNITS,
    MappingError,
    attr_text,
    layer_mapping,
    time_ns,
    unit_from_name,
)
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

UNKNOWN_SERVICE = "unknown_service"  # what OTel SDKs report when service.name is unset

KEYS = frozenset({
    "preset", "name", "start", "end", "duration", "time_unit", "duration_unit", "status",
    "status_message", "error_values", "ok_values", "trace_id", "span_id", "parent_id",
    "trace_group", "service", "service_name", "kind", "attributes", "attribute_prefix",
    "merge_by",
})

PRESETS: dict[str, dict[str, Any]] = {
    # {"ts": 1732000000.25, "event": "spawn", "model": "claude-x", "caste": "worker",
    #  "task": "t-17", "source": "router", "outcome": "success", "duration_ms": 1834, ...}
    "agent-spawn": {
        "name": "agent.{event}",
        "start": "ts",
        "time_unit": "auto",
        "duration": "duration_ms",
        "duration_unit": "ms",
        "status": "outcome",
        "error_values": ["failure", "error", "timeout", "crash"],
        "ok_values": ["success", "ok"],
        "trace_group": "task",
        "service": "service",
        "service_name": "agents",
        "kind": "Internal",
        "attributes": "*",
        "attribute_prefix": "agent.",
        # merge_by: the span id field when the events have one, else _MERGE_FALLBACK's "worker".
    },
}
# What a preset merges by when the events have no span id field (and the mapping sets no
# merge_by): a field naming the unit of work.
_MERGE_FALLBACK = {"agent-spawn": "worker"}

DEFAULT_ERROR_VALUES = ("error", "failure", "failed", "fail", "timeout", "crash", "crashed",
                        "fatal", "aborted")
DEFAULT_OK_VALUES = ("ok", "success", "succeeded", "pass", "passed", "done", "completed")

# Field names tried, in order, when the mapping leaves a key out.
_GUESSES: dict[str, tuple[str, ...]] = {
    "name": ("name", "span_name", "spanName", "operation", "op", "event", "action", "type"),
    "start": ("start", "start_time", "startTime", "timestamp", "ts", "time", "@timestamp"),
    "end": ("end", "end_time", "endTime"),
    "duration": ("duration_ms", "duration", "elapsed_ms", "latency_ms", "duration_us",
                 "duration_ns", "duration_s"),
    "trace_id": ("trace_id", "traceId", "traceID"),
    "span_id": ("span_id", "spanId", "spanID"),
    "parent_id": ("parent_id", "parent_span_id", "parentSpanId", "parentId", "parentSpanID"),
    "service": ("service", "service_name", "service.name"),
    "status": ("status", "outcome", "result"),
}
_FIELD = re.compile(r"\{([^{}]+)\}")


class _Unmappable(Exception):
    """The data lacks what the mapping needs; the whole source becomes one reject."""


class _BadRecord(Exception):
    """One record lacks a mapped field or holds an unreadable value."""


def detect_preset(first_record: dict[str, Any]) -> str | None:
    if {"ts", "event"} <= first_record.keys() and {"model", "caste"} & first_record.keys():
        return "agent-spawn"
    return None


def _hex_id(parts: bytes, size: int, person: bytes) -> str:
    return hashlib.blake2b(parts, digest_size=size, person=person).hexdigest()


@dataclass(frozen=True)
class _Mapping:
    """A resolved mapping: every key has its final value, fields are checked once."""

    name: Callable[[dict[str, Any]], str]
    start: str | None
    end: str | None
    duration: str | None
    time_unit: str
    duration_unit: str
    status: str | None
    status_message: str | None
    error_values: frozenset[str]
    ok_values: frozenset[str]
    ids: tuple[str | None, str | None, str | None]  # trace, span, parent fields
    trace_group: str | None
    service: str | None
    service_name: str
    kind: str | None
    attributes: str | list[tuple[str, str]]  # "*" or (attribute, field) pairs
    prefix: str  # for "*"; listed fields already carry it
    consumed: frozenset[str]  # fields "*" leaves out: they already became span fields
    merge_by: tuple[str, ...] | None  # fields naming a unit of work; None: a span per line


def _field(record: dict[str, Any], name: str) -> object:
    value = record.get(name)
    if value is None:
        raise _BadRecord(f"missing field {name!r}")
    return value


def _name_getter(spec: str) -> tuple[Callable[[dict[str, Any]], str], list[str]]:
    fields = _FIELD.findall(spec)
    if not fields:
        return (lambda r: attr_text(_field(r, spec))), [spec]
    # A template is filled by plain substitution: event data never reaches str.format.
    return (lambda r: _FIELD.sub(lambda m: attr_text(_field(r, m.group(1))), spec)), fields


def _values(spec: object, default: tuple[str, ...]) -> frozenset[str]:
    items = default if spec is None else spec if isinstance(spec, list) else [spec]
    return frozenset(attr_text(v).strip().lower() for v in items)


def resolve_mapping(mapping: dict[str, Any], first_record: dict[str, Any]) -> _Mapping:
    """Preset (named or detected) + guesses from `first_record`, overridden by `mapping`."""
    guessed = {key: next((f for f in names if f in first_record), None)
               for key, names in _GUESSES.items()}
    detected = detect_preset(first_record)
    preset = mapping.get("preset", detected)
    merged = layer_mapping(mapping, known=KEYS, presets=PRESETS, detected=detected,
                           guessed=guessed, what="events")
    if not merged.get("name") or not (merged.get("start") or merged.get("end")):
        missing = [k for k in ("name", "start") if not merged.get(k)]
        raise _Unmappable(f"no field for {', '.join(missing)}: map it (--mapping) or use fields "
                          f"named like {', '.join(_GUESSES[missing[0]][:4])}")
    if merged.get("time_unit") not in (None, *TIME_UNITS):
        raise MappingError(f"time_unit must be one of {', '.join(TIME_UNITS)}")
    if merged.get("duration_unit") not in (None, *UNITS):  # a duration has no magnitude to guess
        raise MappingError(f"duration_unit must be one of {', '.join(UNITS)}")
    name, name_fields = _name_getter(str(merged["name"]))
    spec = merged.get("attributes", "*")
    prefix = str(merged.get("attribute_prefix") or "")
    if isinstance(spec, str) and spec != "*":
        spec = [spec]
    attributes: str | list[tuple[str, str]] = (
        "*" if spec == "*" else [(k, str(v)) for k, v in spec.items()] if isinstance(spec, dict)
        else [(prefix + str(f), str(f)) for f in spec or []])
    ids = (merged.get("trace_id"), merged.get("span_id"), merged.get("parent_id"))
    kind = merged.get("kind")
    span_fields = [merged.get(k) for k in ("start", "end", "duration", "service")]
    try:
        merge_by = merge_fields(merged["merge_by"] if "merge_by" in merged
                                else ids[1] or _MERGE_FALLBACK.get(preset or ""))
    except MergeByError as exc:
        raise MappingError(str(exc)) from None
    return _Mapping(
        name=name,
        start=merged.get("start"), end=merged.get("end"), duration=merged.get("duration"),
        time_unit=merged.get("time_unit") or "auto",
        duration_unit=merged.get("duration_unit") or unit_from_name(merged.get("duration") or "",
                                                                    "ms"),
        status=merged.get("status"), status_message=merged.get("status_message"),
        error_values=_values(merged.get("error_values"), DEFAULT_ERROR_VALUES),
        ok_values=_values(merged.get("ok_values"), DEFAULT_OK_VALUES),
        ids=ids, trace_group=merged.get("trace_group"),
        service=merged.get("service"),
        service_name=str(merged.get("service_name") or UNKNOWN_SERVICE),
        kind=str(kind) if kind else None,
        attributes=attributes,
        prefix=prefix,
        consumed=frozenset(f for f in [*name_fields, *span_fields, *ids] if f),
        merge_by=merge_by,
    )


def _time(record: dict[str, Any], name: str, unit: str) -> int:
    value = _field(record, name)
    ns = time_ns(value, unit)
    if ns is None:
        raise _BadRecord(f"field {name!r} is not a time ({unit}): {attr_text(value)[:60]!r}")
    return ns


def _optional_time(record: dict[str, Any], name: str | None, unit: str) -> int | None:
    return _time(record, name, unit) if name and record.get(name) is not None else None


def _times(record: dict[str, Any], m: _Mapping) -> LineTimes:
    duration = _optional_time(record, m.duration, m.duration_unit)
    if m.start:
        start = _time(record, m.start, m.time_unit)
        end = _optional_time(record, m.end, m.time_unit)
        if end is not None:
            return LineTimes(start, end, end, duration, True)
        # Without a duration too, the event is an instant.
        return LineTimes(start, _bounded(start + duration if duration is not None else start),
                         start, duration, duration is not None)
    end = _time(record, str(m.end), m.time_unit)
    start = end - duration if duration is not None else end
    return LineTimes(_bounded(start), end, end, duration, duration is not None)


def _bounded(ns: int | None) -> int | None:
    # An out-of-range sum goes to the store as missing, which quarantines it as bad_timestamp.
    return ns if ns is not None and abs(ns) <= INT64_MAX else None


def _status(record: dict[str, Any], m: _Mapping) -> tuple[StatusCode, str | None]:
    value = record.get(m.status) if m.status else None
    if value is None:
        return StatusCode.UNSET, None
    text = attr_text(value).strip().lower()
    if text in m.error_values:
        message = record.get(m.status_message) if m.status_message else None
        return StatusCode.ERROR, attr_text(message if message is not None else value)
    if text in m.ok_values:
        return StatusCode.OK, None
    # Spelled-out OTel codes ("STATUS_CODE_ERROR"); numbers are not: exit code 1 is not "Ok".
    return (StatusCode.from_otlp(text) if not text.isdigit() else StatusCode.UNSET), None


def _attributes(record: dict[str, Any], m: _Mapping) -> list[tuple[str, str]]:
    if isinstance(m.attributes, str):  # "*"
        return [(m.prefix + k, attr_text(v)) for k, v in record.items()
                if k not in m.consumed and v is not None]
    return [(key, attr_text(record[f])) for key, f in m.attributes if record.get(f) is not None]


def _ids(record: dict[str, Any], m: _Mapping, seed: bytes) -> tuple[str | None, str | None, str]:
    """Mapped ids pass through raw (the store validates); unmapped ones are derived."""
    trace_f, span_f, parent_f = m.ids
    group = record.get(m.trace_group) if m.trace_group else None
    if trace_f:
        trace = record.get(trace_f)
        trace_id = attr_text(trace) if trace is not None else None
    elif group is not None:
        # Not salted with the source: the same task in two log files is one trace.
        trace_id = _hex_id(attr_text(group).encode(), 16, b"tt-trace-group")
    else:
        trace_id = _hex_id(seed, 16, b"tt-trace")
    span = record.get(span_f) if span_f else None
    span_id = (attr_text(span) if span is not None else None) if span_f else _hex_id(
        seed, 8, b"tt-span")
    parent = record.get(parent_f) if parent_f else None
    return trace_id, span_id, attr_text(parent) if parent is not None else ""


def _kind(record: dict[str, Any], m: _Mapping) -> SpanKind:
    if m.kind is None:
        return SpanKind.UNSPECIFIED
    value = record.get(m.kind)
    # A field of that name wins; otherwise the value is a constant kind such as "Internal".
    return SpanKind.from_otlp(attr_text(value) if value is not None else m.kind)


def _row(record: dict[str, Any], m: _Mapping, seed: bytes, times: LineTimes) -> dict[str, object]:
    trace_id, span_id, parent = _ids(record, m, seed)
    status, message = _status(record, m)
    service_value = record.get(m.service) if m.service else None
    service = attr_text(service_value) if service_value is not None else m.service_name
    return {
        "StartNs": times.start, "EndNs": times.end, "TraceId": trace_id, "SpanId": span_id,
        "ParentSpanId": parent, "SpanName": m.name(record), "SpanKind": _kind(record, m).value,
        "ServiceName": service, "ResourceAttributes": [("service.name", service)],
        "SpanAttributes": _attributes(record, m), "StatusCode": status.value,
        "StatusMessage": message,
    }


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """JSON lines → one staged span per event line, or per unit of merged lines; broken lines
    become rejects (before merging, so a unit loses only its broken lines)."""
    out = Decoded()
    collector: Collector | None = None
    mapping: _Mapping | None = None
    for one in json_lines.objects(data, out.rejects):
        index, line, text, record, pos = one.number - 1, one.raw, one.text, one.record, one.pos
        if mapping is None:
            try:
                mapping = resolve_mapping(options.mapping, record)
            except _Unmappable as exc:
                return Decoded(rejects=[Reject(
                    Signal.TRACES, "document", QuarantineReason.BAD_SHAPE,
                    data.decode("utf-8", "backslashreplace"), f"{pos}: {exc}")])
        seed = b"\0".join([options.source.encode(), str(index + 1).encode(), line])
        try:
            times = _times(record, mapping)
            row = {"Pos": pos, "RecordBytes": len(line), **_row(record, mapping, seed, times)}
        except _BadRecord as exc:
            out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE, text,
                                      str(exc)))
            continue
        if collector is None:
            collector = Collector(mapping.merge_by, mapping.status, mapping.service)
        collector.add(record, row, index + 1, times)
    rows = collector.rows() if collector else []
    if rows:
        out.spans.append(staging.table(staging.SPANS,
                                       {name: [r[name] for r in rows] for name in rows[0]}))
    return out
