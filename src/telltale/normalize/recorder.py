"""Decode a telltale.recorder spool segment (see telltale/recorder/) into spans, no mapping needed.

Every line carries `"telltale.recorder": 1` and a `kind`: `span` (start, end, status),
`event` (an instant; `record`) or `update` (an outcome and attributes known later, for the
event or span with the same `id`). Lines with the same id are one span: attributes merge (later
lines win), the last status wins, and an event's end becomes the time of its last update with
an outcome (so `record` … `update(outcome=…)` measures the unit of work). An update whose
event is not in the same source is quarantined with its reason, never guessed into a span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telltale.model import QuarantineReason, Signal, SpanKind, StatusCode
from telltale.normalize import json_lines, staging
from telltale.normalize.fields import attr_text
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

MARKER = b'"telltale.recorder":1'  # as the recorder writes it (orjson: no spaces)
SDK_NAME = "telltale.recorder"
_STATUS = {"error": StatusCode.ERROR.value, "ok": StatusCode.OK.value}


def looks_like_recorder(chunk: bytes) -> bool:
    """For format detection: a recorder line starts with its marker."""
    return chunk.lstrip().startswith(b"{" + MARKER)


@dataclass
class _Unit:
    pos: str
    size: int
    base: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    end: int | None = None
    message: str | None = None


def _apply(unit: _Unit, line: dict[str, Any]) -> None:
    attrs = line.get("attrs")
    if isinstance(attrs, dict):
        unit.attrs.update(attrs)
    for key in ("outcome", "error.type"):
        if line.get(key) is not None:
            unit.attrs[key] = line[key]
    if line.get("status") in _STATUS:
        unit.status = line["status"]
    if line.get("message") is not None:
        unit.message = attr_text(line["message"])


def _row(unit: _Unit) -> dict[str, object]:
    base = unit.base
    service = attr_text(base.get("service") or "unknown_service")
    status = _STATUS.get(unit.status or "", StatusCode.UNSET.value)
    start = base.get("start")
    end = base.get("end") if base.get("kind") == "span" else unit.end or start
    return {
        "Pos": unit.pos, "RecordBytes": unit.size,
        "StartNs": start if isinstance(start, int) else None,
        "EndNs": end if isinstance(end, int) else None,
        "TraceId": attr_text(base.get("trace", "")), "SpanId": attr_text(base.get("id", "")),
        "ParentSpanId": attr_text(base.get("parent") or ""), "SpanName": base.get("name"),
        "SpanKind": SpanKind.INTERNAL.value, "ServiceName": service,
        "ResourceAttributes": [("service.name", service), ("telemetry.sdk.name", SDK_NAME)],
        "SpanAttributes": [(str(k), attr_text(v)) for k, v in unit.attrs.items() if v is not None],
        "StatusCode": status,
        "StatusMessage": unit.message if status == StatusCode.ERROR.value else None,
    }


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    out = Decoded()
    units: dict[str, _Unit] = {}
    orphans: list[tuple[str, str, dict[str, Any]]] = []
    for one in json_lines.objects(data, out.rejects, what="a telltale.recorder line"):
        line, text, record, pos = one.raw, one.text, one.record, one.pos
        if not isinstance(record.get("id"), str):
            out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE, text,
                                      "not a telltale.recorder line (no id)"))
            continue
        span_id = record["id"]
        if record.get("kind") == "update":
            unit = units.get(span_id)
            if unit is None:
                orphans.append((pos, text, record))
                continue
            _apply(unit, record)
            when = record.get("time")
            if record.get("outcome") is not None and isinstance(when, int):
                unit.end = max(unit.end or 0, when)
            continue
        unit = _Unit(pos, len(line), record)
        _apply(unit, record)
        units[span_id] = unit
    for pos, text, record in orphans:  # an update written before its event (clock, threads)
        unit = units.get(record["id"])
        if unit is None:
            out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE, text,
                                      f"update for span {record['id']} not in this source"))
            continue
        _apply(unit, record)
        if record.get("outcome") is not None and isinstance(record.get("time"), int):
            unit.end = max(unit.end or 0, record["time"])
    rows = [_row(u) for u in units.values()]
    if rows:
        out.spans.append(staging.table(staging.SPANS,
                                       {name: [r[name] for r in rows] for name in rows[0]}))
    return out
