"""Merge the event lines of one unit of work into one span (see docs/mapping.md, `merge_by`).

Orchestrators and job runners log a unit of work more than once: a `spawn` line when a worker
starts, a `complete` line (outcome, duration, tokens) when it ends, both with the same span id.
The events decoder stages every line as a row first (so broken lines are rejected exactly as
without merging) and folds rows with the same merge key into a `Unit`: one dict lookup and a
few comparisons per line. Units are finished into staging rows in first-seen order, so the
output is deterministic.

Merged times: start = the earliest line start; end = the latest of every line's end (its end
field, else its timestamp) and of start + each line's duration (a duration measures the whole
unit from its start, as a `complete` line's `duration_ms` does). A unit of one line keeps the
times it would have alone. A unit of one line with no end and no duration never finished: it
stays an instant (end = start) and gets the attribute `telltale.open` = `"true"`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from telltale.normalize.fields import INT64_MAX, attr_text

OPEN_ATTRIBUTE = "telltale.open"


class MergeByError(ValueError):
    """`merge_by` is not a field name, a list of field names, or null."""


def merge_fields(spec: object) -> tuple[str, ...] | None:
    """The `merge_by` mapping value as a tuple of field names; None turns merging off."""
    if spec is None:
        return None
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, list) or not items or not all(
            isinstance(f, str) and f for f in items):
        raise MergeByError("merge_by must be a field name, a non-empty list of field names, "
                           "or null")
    return tuple(items)


def merge_key(record: dict[str, Any], fields: tuple[str, ...]) -> Hashable | None:
    """The record's unit of work, or None when it lacks a merge field (it stays on its own)."""
    if len(fields) == 1:
        value = record.get(fields[0])
        return None if value is None else attr_text(value)
    values = [record.get(f) for f in fields]
    return None if any(v is None for v in values) else tuple(attr_text(v) for v in values)


@dataclass(slots=True)
class LineTimes:
    """One line's times, as read before any merging (int64 ns; None = out of range)."""

    start: int | None  # the span start this line alone gives
    end: int | None  # the span end this line alone gives
    last: int  # the latest moment the line names: its end field, else its timestamp
    duration: int | None
    ended: bool  # the line says when the work ended: an end (with a start) or a duration


def _bounded(ns: int | None) -> int | None:
    return ns if ns is not None and abs(ns) <= INT64_MAX else None


class Unit:
    """Lines with one merge key, folded: the first line's row plus what later lines add."""

    __slots__ = ("attributes", "duration", "ended", "last", "lines", "row", "service_set",
                 "size", "start", "start_known")

    def __init__(self, row: dict[str, Any], line: int, times: LineTimes,
                 has_service: bool) -> None:
        self.row = row
        self.lines = [line]
        self.size: int = row["RecordBytes"]
        self.start = times.start
        self.start_known = times.start is not None
        self.last = times.last
        self.duration = times.duration
        self.ended = times.ended
        self.attributes: dict[str, str] | None = None  # built when a second line arrives
        self.service_set = has_service

    def add(self, row: dict[str, Any], line: int, times: LineTimes, has_status: bool,
            has_service: bool) -> None:
        """Fold in a later line: its attributes override, its status wins if it has one."""
        first = self.row
        self.lines.append(line)
        self.size += row["RecordBytes"]
        if times.start is None:
            self.start_known = False
        elif self.start is None or times.start < self.start:
            self.start = times.start
        self.last = max(self.last, times.last)
        if times.duration is not None and (self.duration is None
                                           or times.duration > self.duration):
            self.duration = times.duration
        self.ended = self.ended or times.ended
        if self.attributes is None:
            self.attributes = dict(first["SpanAttributes"])
        self.attributes.update(row["SpanAttributes"])
        if has_status:
            first["StatusCode"], first["StatusMessage"] = row["StatusCode"], row["StatusMessage"]
        if has_service and not self.service_set:
            first["ServiceName"] = row["ServiceName"]
            first["ResourceAttributes"] = row["ResourceAttributes"]
            self.service_set = True
        for column in ("TraceId", "SpanId", "ParentSpanId"):
            if not first[column] and row[column]:
                first[column] = row[column]

    def finish(self) -> dict[str, Any]:
        row = self.row
        row["RecordBytes"] = self.size
        if len(self.lines) == 1:
            if not self.ended:
                row["SpanAttributes"] = [*row["SpanAttributes"], (OPEN_ATTRIBUTE, "true")]
            return row
        row["Pos"] = "lines " + ",".join(map(str, self.lines))
        start = self.start if self.start_known else None
        end: int | None = self.last
        if start is not None and self.duration is not None:
            end = _bounded(max(self.last, start + self.duration))
        row["StartNs"], row["EndNs"] = start, end
        if self.attributes is not None:
            row["SpanAttributes"] = list(self.attributes.items())
        return row


class Collector:
    """Staged rows in first-seen order: lines without a merge key as they are, units folded."""

    __slots__ = ("_fields", "_rows", "_service", "_status", "_units")

    def __init__(self, fields: tuple[str, ...] | None, status: str | None,
                 service: str | None) -> None:
        self._fields = fields
        self._status = status
        self._service = service
        self._rows: list[dict[str, Any] | Unit] = []
        self._units: dict[Hashable, Unit] = {}

    def add(self, record: dict[str, Any], row: dict[str, Any], line: int,
            times: LineTimes) -> None:
        key = merge_key(record, self._fields) if self._fields else None
        if key is None:
            self._rows.append(row)
            return
        has_service = self._service is not None and record.get(self._service) is not None
        unit = self._units.get(key)
        if unit is None:
            self._units[key] = unit = Unit(row, line, times, has_service)
            self._rows.append(unit)
        else:
            has_status = self._status is not None and record.get(self._status) is not None
            unit.add(row, line, times, has_status, has_service)

    def rows(self) -> list[dict[str, Any]]:
        return [r.finish() if isinstance(r, Unit) else r for r in self._rows]
