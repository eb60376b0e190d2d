"""JSON-lines logs (structlog, pino, bunyan, zap, logrus, Docker `{"log": ...}`, ECS...).

The common field names for time, level, message, logger, service and trace/span ids are
found automatically (first present wins, dotted names also as nested paths); `mapping` may name
the field for any of them (`{"time": "when", "message": "text"}`). Every other field becomes a
LogAttribute (nested values as compact JSON), so nothing the line said is lost.
"""

from __future__ import annotations

from typing import Any

import orjson

from telltale.model import Signal
from telltale.normalize.json_lines import objects
from telltale.normalize.log_records import Record, to_table
from telltale.normalize.log_times import LEVEL, TimeContext, parse_time, severity
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded

FIELDS: dict[str, tuple[str, ...]] = {
    "time": ("ts", "time", "timestamp", "@timestamp", "Timestamp", "datetime", "date", "t",
             "timeUnixNano", "time_unix_nano"),
    "level": ("level", "severity", "lvl", "loglevel", "log.level", "levelname", "severity_text",
              "SeverityText", "severityText", "LEVEL"),
    "message": ("msg", "message", "log", "body", "Body", "MESSAGE", "text", "event"),
    "logger": ("logger", "logger_name", "loggerName", "log.logger", "name", "caller"),
    "service": ("service", "service.name", "service_name", "serviceName", "app"),
    "trace_id": ("trace_id", "traceId", "trace.id", "traceid", "TraceId", "TraceID",
                 "trace_id_hex", "otelTraceID"),
    "span_id": ("span_id", "spanId", "span.id", "spanid", "SpanId", "SpanID", "otelSpanID"),
}


def _get(doc: dict[str, Any], name: str) -> tuple[bool, Any]:
    if name in doc:
        return True, doc[name]
    node: Any = doc
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def find_fields(doc: dict[str, Any], overrides: dict[str, Any]) -> dict[str, str]:
    """Role → field name for the roles this object has (an override always wins)."""
    roles: dict[str, str] = {}
    for role, names in FIELDS.items():
        given = overrides.get(role)
        for name in ((str(given),) if given else names):
            present, value = _get(doc, name)
            if present and value is not None and not isinstance(value, dict | list):
                roles[role] = name
                break
    return roles


def is_log_object(doc: dict[str, Any]) -> bool:
    """A JSON object that reads as a log record: a message field and a time or level field."""
    roles = find_fields(doc, {})
    return "message" in roles and ("time" in roles or "level" in roles)


def _flat(doc: dict[str, Any], used: set[str], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if name in used:
            continue
        if isinstance(value, dict) and len(out) < 256:
            out.update(_flat(value, used, name + "."))
        elif isinstance(value, str):
            out[name] = value
        else:
            out[name] = orjson.dumps(value).decode()
    return out


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """JSON-lines bytes → staged log records; non-object lines are quarantined with a reason."""
    m = options.mapping
    ctx = TimeContext.of(m.get("timezone"), int(m["year"]) if m.get("year") else None)
    out = Decoded()
    records: list[Record] = []
    offset = options.first_line - 1
    for line in objects(data, out.rejects, signal=Signal.LOGS, what="a log record"):
        doc = line.record
        roles = find_fields(doc, m)
        value = {role: _get(doc, name)[1] for role, name in roles.items()}
        message = value.get("message")
        record = Record(f"line {line.number + offset}", len(line.raw),
                        message if isinstance(message, str) else
                        "" if message is None else orjson.dumps(message).decode())
        record.body = record.body.rstrip("\n")
        if "time" in value:
            record.time_ns = parse_time(value["time"], ctx) or 0
        if "level" in value:
            record.severity_text, record.severity_number = severity(value["level"])
        else:  # Docker's {"log": "... ERROR ..."}: the level is in the text
            found = LEVEL.search(record.body, 0, 64)
            if found:
                record.severity_text, record.severity_number = severity(found.group("up") or
                                                                        found.group("br"))
        record.logger = str(value.get("logger") or "")
        record.service = str(value.get("service") or "")
        record.trace_id = str(value.get("trace_id") or "").lower()
        record.span_id = str(value.get("span_id") or "").lower()
        record.attributes = _flat(doc, set(roles.values()))
        records.append(record)
    if records:
        out.logs.append(to_table(records, "telltale/json-log"))
    return out
