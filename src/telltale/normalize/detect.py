"""Input format auto-detection from the first bytes of a (decompressed) source.

Looks at several lines, not one, so a file whose first lines are torn still detects by its
majority; reports the evidence so `ingest` can say what it chose and why.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import orjson

from telltale.model import Format
from telltale.normalize import json_logs, syslog, text_logs
from telltale.normalize.ci_spans import sniff as sniff_ci
from telltale.normalize.options import DecodeOptions

HEAD_BYTES = 256 * 1024
LEADING_SPACE = re.compile(rb"\s*")  # (a match, not a strip: no copy of the data)
_MAX_LINES = 50
_OTLP_KEYS = re.compile(rb'"(resourceSpans|resourceLogs|resourceMetrics)"')
_JAEGER = re.compile(rb'"traceID"\s*:')
_JAEGER_SPANS = re.compile(rb'"(spans|operationName)"\s*:')
_ZIPKIN = re.compile(rb'"traceId"\s*:.*"id"\s*:|"id"\s*:.*"traceId"\s*:', re.S)


def _json_log(line: bytes) -> bool:
    """A JSON line that reads as a log record for auto-detection: a message and a level.

    Stricter than the decoder's own test: event streams (agent spawns, structlog-like
    `{"ts", "event", ...}` lines) have a time and a message-like field too, and are read with
    an events mapping unless the lines say how severe they are."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(doc, dict):
        return False
    roles = json_logs.find_fields(doc, {})
    return "message" in roles and "level" in roles


class DetectionError(ValueError):
    """No known format matches the input."""


@dataclass(frozen=True)
class Detection:
    format: Format
    evidence: str


def _is_text(head: bytes) -> bool:
    """Mostly printable UTF-8? A few damaged bytes (a torn line, a NUL) do not make a file binary."""
    sample = head[:8192]
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32)
    undecodable = sample.decode("utf-8", errors="replace").count("\ufffd")
    return (controls + undecodable) <= len(sample) * 0.05


def _json_kind(chunk: bytes) -> Format | None:
    if chunk.lstrip().startswith(b'{"telltale.recorder":1'):
        return Format.RECORDER_JSONL
    if _OTLP_KEYS.search(chunk):
        return Format.OTLP_JSON
    if _JAEGER.search(chunk) and _JAEGER_SPANS.search(chunk):
        return Format.JAEGER_JSON
    if chunk.lstrip().startswith(b"[") and _ZIPKIN.search(chunk):
        return Format.ZIPKIN_JSON
    return None


def is_json_lines(head: bytes) -> bool:
    """JSON lines (each line a whole document, e.g. an OTLP request), not one pretty-printed
    document: the first non-blank line is a whole object."""
    start = LEADING_SPACE.match(head).end()  # type: ignore[union-attr]
    end = head.find(b"\n", start)
    first = head[start:end if end >= 0 else len(head)]  # (no copy of the whole head)
    return first.startswith(b"{") and first.rstrip().endswith(b"}")


def detect(head: bytes, name: str = "") -> Detection:
    """Pick the format of a source from its first bytes (at most HEAD_BYTES)."""
    if not head.strip():
        raise DetectionError("empty input")
    if not _is_strict_text(head):
        if _starts_like_otlp_proto(head) or not _is_text(head):
            return Detection(Format.OTLP_PROTO, "binary content (protobuf)")
        try:  # mostly text with some damage: torn JSON lines, a stray NUL...
            return _detect_text(head, name)
        except DetectionError:
            return Detection(Format.OTLP_PROTO, "binary content (protobuf)")
    return _detect_text(head, name)


def _is_strict_text(head: bytes) -> bool:
    sample = head[:4096]
    if b"\x00" in sample:
        return False
    try:
        sample.decode()
    except UnicodeDecodeError as exc:
        return exc.start >= len(sample) - 3  # a character cut at the sample's end
    return True


def _starts_like_otlp_proto(head: bytes) -> bool:
    """Export*ServiceRequest starts with field 1, length-delimited (0x0A), possibly after a
    varint frame length. Text never starts that way (0x0A after a varint would be a newline
    after a character, and such text is caught as strict text first)."""
    if head[:1] == b"\x0a":
        return True
    for i, byte in enumerate(head[:10]):
        if byte < 0x80:  # the last byte of the varint
            return head[i + 1:i + 2] == b"\x0a"
    return False


def _detect_text(head: bytes, name: str) -> Detection:
    body = head.lstrip()
    # Before the array branch: `gh run list --json` output is a JSON array of runs.
    ci_kind = sniff_ci(body) if _json_kind(body) is None else None
    if ci_kind is not None:
        return Detection(Format(ci_kind), f"CI runs ({ci_kind})")
    first = body[:1]
    if first == b"[":
        kind = _json_kind(body)
        if kind is not None:
            return Detection(kind, "JSON array of " + ("Zipkin v2 spans" if kind is
                                                        Format.ZIPKIN_JSON else "traces"))
        raise DetectionError("a JSON array, but neither Zipkin v2 spans nor Jaeger traces")
    lines = [ln for ln in body.split(b"\n")[:_MAX_LINES] if ln.strip()]
    if first == b"{" or sum(ln.lstrip().startswith(b"{") for ln in lines) > len(lines) // 2:
        votes: Counter[Format] = Counter()
        for line in lines:
            if line.lstrip().startswith(b"{"):
                votes[_json_kind(line) or (Format.LOG_JSONL if _json_log(line)
                                           else Format.EVENTS_JSONL)] += 1
        whole = _json_kind(body)
        # A pretty-printed document splits its keys over lines: judge it as a whole.
        if whole is not None and (len(lines) == 1 or votes[whole] == 0 or not lines[0].rstrip()
                                  .endswith(b"}")):
            return Detection(whole, f"JSON document with {whole.value} keys")
        if whole is None and first == b"{" and not lines[0].rstrip().endswith(b"}"):
            # One pretty-printed document of a shape nobody knows: it is one record, and
            # reading its lines as events would only quarantine each of them separately.
            raise DetectionError("a JSON document, but not OTLP, Jaeger, Zipkin or CI runs; "
                                 "pass --format")
        if votes:
            fmt, count = votes.most_common(1)[0]
            return Detection(fmt, f"JSON lines: {count} of {len(lines)} sampled lines are {fmt}")
    # Log lines before CSV: a log message may well hold two commas.
    texts = [ln.decode(errors="replace") for ln in lines]
    if texts and sum(syslog.looks_like(t) for t in texts) > len(texts) // 2:
        return Detection(Format.SYSLOG, f"syslog: {len(texts)} sampled lines")
    starts = text_logs.record_start(DecodeOptions())
    # Stack traces and continuation lines can outnumber the records' first lines: the file's
    # first line must start a record, and at least a fifth of the lines do.
    n_starts = sum(starts(t) for t in texts)
    if texts and starts(texts[0]) and n_starts * 5 >= len(texts):
        return Detection(Format.LOG_TEXT, f"log lines: {n_starts} of {len(texts)} sampled lines "
                         "start a record (a time or a level)")
    header = lines[0] if lines else b""
    # Nezha's log and metric CSVs (github.com/IntelligentDDS/Nezha) by their exact headers.
    if header.startswith(b"Timestamp,TimeUnixNano,") and b",Log" in header:
        return Detection(Format.NEZHA_LOGS, "CSV with Nezha's container-log header")
    if header.startswith(b"Time,TimeStamp,") and (b"PodName" in header
                                                  or b"ServiceName" in header):
        return Detection(Format.NEZHA_METRICS, "CSV with Nezha's metric header")
    if header.count(b",") >= 2 and not header.lstrip().startswith(b"{"):
        return Detection(Format.CSV_SPANS, f"CSV with header {header[:80].decode(errors='replace')!r}")
    raise DetectionError(f"unrecognised input{f' {name}' if name else ''}: not OTLP, Jaeger, "
                         "Zipkin, CSV or JSON lines; pass --format")
