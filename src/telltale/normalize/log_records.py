"""The log record every log decoder (text, JSON lines, syslog) builds, and its staging table.

Also the trace-context extractor run on each record at decode time: ids that a record's text
carries (`TraceID: <32 hex> SpanID: <16 hex>`, `trace_id=...`, `"traceId":"..."`, a W3C
`traceparent`) become its TraceId/SpanId, so logs join their spans without another pass.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from telltale.model import QuarantineReason, Signal
from telltale.normalize import staging
from telltale.normalize.log_times import TimeContext
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Reject

_TRACE = re.compile(r"(?i)\btrace[_.\- ]?id[\"']?\s*[:=]\s*[\"']?([0-9a-f]{32})\b")
_SPAN = re.compile(r"(?i)\bspan[_.\- ]?id[\"']?\s*[:=]\s*[\"']?([0-9a-f]{16})\b")
_TRACEPARENT = re.compile(r"\b[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}\b")


@dataclass
class Record:
    """One log record as decoded; `time_ns` 0 means the source stated no time."""

    pos: str
    raw_bytes: int
    body: str
    time_ns: int = 0
    severity_text: str = ""
    severity_number: int = 0
    logger: str = ""
    service: str = ""
    trace_id: str = ""
    span_id: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    resource: dict[str, str] = field(default_factory=dict)


def link_trace(record: Record) -> None:
    """Fill TraceId/SpanId from ids the body carries, unless a field already gave them."""
    if record.trace_id:
        return
    body = record.body
    if "race" not in body and "RACE" not in body:  # cheap pre-check: most lines carry no ids
        return
    found = _TRACE.search(body)
    if found:
        record.trace_id = found.group(1).lower()
        span = _SPAN.search(body)
        record.span_id = span.group(1).lower() if span else record.span_id
        return
    parent = _TRACEPARENT.search(body)
    if parent and "traceparent" in body.lower():
        record.trace_id, record.span_id = parent.group(1).lower(), parent.group(2).lower()


def _attrs(maps: list[dict[str, str]]) -> pa.Array:
    offsets = [0]
    keys: list[str] = []
    values: list[str] = []
    for m in maps:
        keys.extend(m)
        values.extend(m.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()),
                                   pa.array(values, pa.string()), type=staging.ATTRS)


def to_table(records: list[Record], scope: str, observed_ns: int | None = None) -> pa.Table:
    """Staged log rows. ObservedTimestamp is the ingest time, so a record without a time of its
    own is still stored (at the moment it was seen) instead of quarantined."""
    observed = observed_ns if observed_ns is not None else time.time_ns()
    for r in records:
        link_trace(r)
        if r.service:
            r.resource.setdefault("service.name", r.service)
        if r.logger:
            r.attributes.setdefault("logger", r.logger)
    return staging.table(staging.LOGS, {
        "Pos": [r.pos for r in records],
        "RecordBytes": [r.raw_bytes for r in records],
        "Timestamp": [r.time_ns or None for r in records],
        "ObservedTimestamp": [observed] * len(records),
        "TraceId": [r.trace_id or None for r in records],
        "SpanId": [r.span_id or None for r in records],
        "SeverityText": [r.severity_text for r in records],
        "SeverityNumber": [r.severity_number for r in records],
        "ServiceName": [r.service for r in records],
        "Body": [r.body for r in records],
        "ScopeName": [r.logger or scope for r in records],
    }).set_column(staging.LOGS.get_field_index("ResourceAttributes"), "ResourceAttributes",
                  _attrs([r.resource for r in records])).set_column(
        staging.LOGS.get_field_index("LogAttributes"), "LogAttributes",
        _attrs([r.attributes for r in records]))


def context(options: DecodeOptions) -> TimeContext:
    m = options.mapping
    return TimeContext.of(m.get("timezone"), int(m["year"]) if m.get("year") else None)


def lines(data: bytes, options: DecodeOptions, rejects: list[Reject]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; undecodable ones go to `rejects`."""
    for index, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n")):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        number = index + options.first_line
        try:
            if b"\x00" in raw:
                raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1,
                                         "NUL byte: binary data")
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejects.append(Reject(Signal.LOGS, f"line {number}", QuarantineReason.BAD_ENCODING,
                                  raw[:1 << 16].decode("utf-8", "backslashreplace"), str(exc)))
