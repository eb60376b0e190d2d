"""Decode a telltale.recorder spool segment (see telltale/recorder/) into spans, no mapping needed.

Two line formats, both read here (a file may even hold both, e.g. segments concatenated):

* version 1: one object per line, every field named, each carrying `"telltale.recorder": 1` and
  a `kind`: `span` (start, end, status), `event` (an instant; `record`) or `update` (an outcome
  and attributes known later, for the event or span with the same `id`);
* version 2 (telltale/recorder/lines.py): a segment header object (`"kind": "segment"`: service,
  id prefix, time base) and then one compact JSON array per entry, expanded here into the
  version-1 shape against the header before it.

Lines with the same id are one span: attributes merge (later lines win), the last status wins,
and an event's end becomes the time of its last update with an outcome (so `record` …
`update(outcome=…)` measures the unit of work). An update whose event is not in the same source
is quarantined with its reason, never guessed into a span.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from telltale.model import QuarantineReason, Signal, SpanKind, StatusCode
from telltale.normalize import staging
from telltale.normalize.fields import attr_text
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

MARKER = b'"telltale.recorder":1'  # as the recorder writes it (orjson: no spaces)
SDK_NAME = "telltale.recorder"
_STATUS = {"error": StatusCode.ERROR.value, "ok": StatusCode.OK.value}
_TRACE_PAD = "0" * 16  # a root's trace id is its span id, padded to 32 hex digits
_KINDS = {"e": "event", "s": "span", "u": "update"}


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


@dataclass(frozen=True)
class _Segment:
    """A version-2 segment header: what its entries share."""

    service: str
    prefix: int  # the high 32 bits of this process's span ids
    base: int  # entry times are nanoseconds after this

    @classmethod
    def parse(cls, record: dict[str, Any]) -> _Segment | None:
        prefix, base = record.get("prefix"), record.get("base")
        if not (isinstance(prefix, str) and len(prefix) == 8 and isinstance(base, int)):
            return None
        try:
            return cls(str(record.get("service") or ""), int(prefix, 16) << 32, base)
        except ValueError:
            return None

    def id(self, value: object) -> str:
        """A counter under this prefix, or a whole id (from another process) as written."""
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return format(self.prefix | value, "016x")
        raise ValueError(f"not an id: {value!r}")

    def time(self, value: object) -> int | None:
        return self.base + value if isinstance(value, int) and not isinstance(value, bool) else None

    def place(self, ctx: object, own: str) -> tuple[str, str]:
        """(trace id, parent id) from an entry's ctx: 0 a root, p under the root p, [t, p]."""
        if ctx == 0:
            return _TRACE_PAD + own, ""
        if isinstance(ctx, list) and len(ctx) == 2:
            trace = ctx[0] if isinstance(ctx[0], str) else _TRACE_PAD + self.id(ctx[0])
            return trace, self.id(ctx[1])
        root = self.id(ctx)
        return _TRACE_PAD + root, root


def expand(row: list[Any], seg: _Segment) -> dict[str, Any]:
    """A version-2 entry in the version-1 shape (ValueError when it is not one)."""
    kind = _KINDS.get(row[0]) if row and isinstance(row[0], str) else None
    if kind == "update" and len(row) in (4, 6):
        out = {"kind": kind, "id": seg.id(row[1]), "time": seg.time(row[2]), "attrs": row[3]}
        if len(row) == 6:
            out["outcome"], out["status"] = row[4], row[5]
        return out
    if (kind == "event" and len(row) in (6, 7)) or (kind == "span" and len(row) in (8, 9, 11)):
        own = seg.id(row[1])
        trace, parent = seg.place(row[2], own)
        start = seg.time(row[4])
        out = {"kind": kind, "id": own, "trace": trace, "parent": parent, "name": row[3],
               "service": seg.service, "start": start}
        if kind == "event":
            out["attrs"] = row[5]
            if len(row) == 7:
                out["status"] = row[6]
            return out
        duration = row[5]
        out["end"] = start + duration if start is not None and isinstance(duration, int) else None
        out["attrs"], out["status"] = row[6], row[7]
        if len(row) == 9:
            out["outcome"] = row[8]
        elif len(row) == 11:
            out["error.type"], out["message"] = row[9], row[10]
        return out
    raise ValueError("not a telltale.recorder entry")


def entries(data: bytes, rejects: list[Reject],
            first_line: int = 1) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """(position, raw line, record in the version-1 shape) of every entry; other lines rejected."""
    seg: _Segment | None = None
    for index, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=first_line):
        line = raw.strip()
        if not line:
            continue
        pos = f"line {index}"
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as bad:
                rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_ENCODING,
                                      line.decode("utf-8", "backslashreplace"), str(bad)))
                continue
            rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.UNPARSABLE, text,
                                  f"not JSON: {exc}"))
            continue
        if isinstance(value, dict) and value.get("kind") == "segment":
            seg = _Segment.parse(value)
            if seg is None:
                rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE,
                                      line.decode(), "a segment header without prefix and base"))
            continue
        if isinstance(value, list):
            try:
                if seg is None:
                    raise ValueError("an entry before any segment header")
                value = expand(value, seg)
            except (ValueError, TypeError, IndexError) as exc:
                rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE,
                                      line.decode(), str(exc)))
                continue
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE, line.decode(),
                                  "not a telltale.recorder line (no id)"))
            continue
        yield pos, line, value


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    out = Decoded()
    units: dict[str, _Unit] = {}
    orphans: list[tuple[str, str, dict[str, Any]]] = []
    for pos, line, record in entries(data, out.rejects, options.first_line):
        span_id = record["id"]
        if record.get("kind") == "update":
            unit = units.get(span_id)
            if unit is None:
                orphans.append((pos, line.decode(), record))
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
