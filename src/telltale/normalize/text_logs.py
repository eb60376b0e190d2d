"""Plain text logs: one record per line, multi-line records (stack traces) folded into one.

A line *starts* a record when it begins with a recognisable timestamp, a level word or a
syslog priority (or matches `multiline_start` / `pattern` when given); any other line continues
the previous record. A file in which no sampled line starts a record is read one record per
line, so an unknown layout never collapses into one giant record. Options (`mapping`):

  pattern          regex with named groups: time, level, message, logger, trace_id, span_id,
                   service; any other group becomes a LogAttribute
  multiline_start  regex for a record's first line ("" or "line": every line is a record)
  timezone         zone of zone-less timestamps (IANA name, default UTC)
  year             year of year-less (syslog) timestamps, default the current year

`decode` also reads JSON-lines logs and syslog when the data looks like them, so
`--format log` works on any log file. Lines with NUL bytes or invalid UTF-8 are quarantined
as BAD_ENCODING; with a pattern, lines before its first match as UNPARSABLE.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from telltale.model import QuarantineReason, Signal
from telltale.normalize import json_logs, syslog
from telltale.normalize.log_records import Record, context, lines, to_table
from telltale.normalize.log_times import LEVEL, TimeContext, leading_time, parse_time, severity
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

_SAMPLE = 200
_SEPARATORS = " \t-:|"
_KNOWN_GROUPS = ("time", "level", "message", "logger", "trace_id", "span_id", "service")


def _first_text(data: bytes) -> str:
    for raw in data[:65536].split(b"\n"):
        if raw.strip():
            return raw.strip().decode("utf-8", "replace")
    return ""


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """Log bytes → staged log records (JSON lines and syslog are recognised and delegated)."""
    if "pattern" not in options.mapping:
        first = _first_text(data)
        if first.startswith("{"):
            return json_logs.decode(data, options)
        if syslog.looks_like(first):
            return syslog.decode(data, options)
    return decode_text(data, options)


def _default_start(text: str, ctx: TimeContext) -> bool:
    if not text or text[0] in " \t":
        return False
    return leading_time(text, ctx) is not None or LEVEL.match(text) is not None


def record_start(options: DecodeOptions) -> Callable[[str], bool]:
    """The start-of-record rule `options` configure (the follower holds back a record until
    the next one starts, so a stack trace still being written is not cut)."""
    m = options.mapping
    rule = m.get("multiline_start")
    if rule is not None:
        starts = re.compile(rule) if rule not in ("", "line") else None
        return lambda t: starts is None or bool(starts.match(t))
    if m.get("pattern"):
        pattern = re.compile(m["pattern"])
        return lambda t: bool(pattern.match(t))
    ctx = context(options)
    return lambda t: _default_start(t, ctx) or t.startswith("{") or syslog.looks_like(t)


def decode_text(data: bytes, options: DecodeOptions) -> Decoded:
    ctx = context(options)
    out = Decoded()
    m = options.mapping
    pattern = re.compile(m["pattern"]) if m.get("pattern") else None
    start_rule = m.get("multiline_start")
    numbered = list(lines(data, options, out.rejects))
    if start_rule is not None:
        starts = re.compile(start_rule) if start_rule not in ("", "line") else None
        is_start = [starts is None or bool(starts.match(t)) for _, t in numbered]
    elif pattern is not None:
        is_start = [bool(pattern.match(t)) for _, t in numbered]
    else:
        is_start = [_default_start(t, ctx) for _, t in numbered]
        if numbered and not any(is_start[:_SAMPLE]):
            is_start = [True] * len(numbered)
    records: list[Record] = []
    group: list[tuple[int, str]] = []

    def flush() -> None:
        if not group:
            return
        record = _record(group, pattern, ctx)
        if record is None:  # only with a pattern that the first line does not match
            number = group[0][0]
            out.rejects.append(Reject(Signal.LOGS, f"line {number}", QuarantineReason.UNPARSABLE,
                                      "\n".join(t for _, t in group)[:1 << 16],
                                      "does not match --pattern"))
        else:
            records.append(record)
        group.clear()

    for (number, text), start in zip(numbered, is_start, strict=True):
        if start or (pattern is not None and not group):
            flush()
        group.append((number, text))
    flush()
    if records:
        out.logs.append(to_table(records, "telltale/text-log"))
    return out


def _record(group: list[tuple[int, str]], pattern: re.Pattern[str] | None,
            ctx: TimeContext) -> Record | None:
    number, first = group[0]
    rest = "\n".join(t for _, t in group[1:])
    size = sum(len(t) + 1 for _, t in group)
    pos = f"line {number}" if len(group) == 1 else f"lines {number}-{group[-1][0]}"
    if pattern is not None:
        found = pattern.match(first)
        return None if found is None else _from_groups(found.groupdict(), first, rest, pos, size, ctx)
    record = Record(pos, size, "")
    head = leading_time(first, ctx)
    text = first
    if head is not None:
        record.time_ns, end = head
        text = first[end:]
    level = LEVEL.search(text, 0, 64)
    if level is not None:
        record.severity_text, record.severity_number = severity(level.group("up") or level.group("br"))
        if not text[:level.start()].strip(_SEPARATORS):  # the level leads: it is not message
            text = text[level.end():]
    text = text.lstrip(_SEPARATORS)
    record.body = f"{text}\n{rest}" if rest else text
    return record


def _from_groups(groups: dict[str, Any], first: str, rest: str, pos: str, size: int,
                 ctx: TimeContext) -> Record:
    message = groups.get("message")
    body = first if message is None else str(message)
    record = Record(pos, size, f"{body}\n{rest}" if rest else body)
    if groups.get("time"):
        record.time_ns = parse_time(groups["time"], ctx) or 0
        if not record.time_ns:
            record.attributes["log.time.unparsed"] = str(groups["time"])
    if groups.get("level"):
        record.severity_text, record.severity_number = severity(groups["level"])
    record.logger = groups.get("logger") or ""
    record.service = groups.get("service") or ""
    record.trace_id = (groups.get("trace_id") or "").lower()
    record.span_id = (groups.get("span_id") or "").lower()
    for name, value in groups.items():
        if name not in _KNOWN_GROUPS and value is not None:
            record.attributes[name] = str(value)
    return record
