"""OTLP request bodies (protobuf or JSON, one per HTTP/gRPC call) → one grouped `Decoded`.

Every body becomes one part of a grouped commit (its own batch). The decoders are the file
ingest's: protobuf traces go through ptars in one call for the whole group, logs and metrics
through upb, JSON through the engine path. A body that cannot be decoded at all is quarantined
(nothing is dropped silently) and its request answered 400.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

from telltale.model import QuarantineReason, Signal
from telltale.normalize import otlp_json
from telltale.normalize.options import DecodeOptions
from telltale.normalize.otlp_arrow import trace_requests
from telltale.normalize.otlp_proto import decode_request, parse
from telltale.normalize.staging import Decoded, Reject
from telltale.store import BatchReport, BatchSource

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class Part:
    """One request body (already decompressed) and how it arrived."""

    signal: Signal
    body: bytes
    content_type: str  # PROTOBUF or JSON
    transport: str  # "otlp-http" / "otlp-grpc": the batch's source

    @property
    def source(self) -> BatchSource:
        digest = hashlib.sha256(self.body).hexdigest()
        return BatchSource(self.transport, f"otlp-{'json' if self.content_type == JSON else 'proto'}",
                           f"{digest}:{self.transport}:{self.signal}:{self.content_type}")


@dataclass(frozen=True)
class PartResult:
    """What happened to one request: its batch report, and why it was refused if it was."""

    report: BatchReport
    undecodable: str | None = None

    @property
    def rejected(self) -> int:
        return self.report.total_quarantined

    def message(self) -> str:
        if not self.report.quarantined:
            return ""
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.report.quarantined.items()))
        return f"quarantined {self.rejected} record(s): {reasons}"


def _reject(part: Part, index: int, detail: str) -> Reject:
    raw = part.body.decode(errors="replace") if part.content_type == JSON else part.body.hex()
    return Reject(part.signal, "request", QuarantineReason.UNPARSABLE, raw[:65536],
                  detail[:500], part=index)


# The grouped staging input, each part's batch source, and the undecodable parts (index → reason).
DecodedGroup = tuple[Decoded, list[BatchSource], dict[int, str]]


def decode_group(parts: list[Part]) -> DecodedGroup:
    """Decode every part; returns the grouped staging input, each part's batch source, and the
    parts that could not be decoded at all (index → reason)."""
    out = Decoded()
    undecodable: dict[int, str] = {}
    proto_traces = [i for i, p in enumerate(parts)
                    if p.signal is Signal.TRACES and p.content_type == PROTOBUF]
    if proto_traces:
        traces, rejects = trace_requests([parts[i].body for i in proto_traces],
                                         ["request"] * len(proto_traces), proto_traces)
        out.proto_traces += [traces] if traces is not None else []
        for r in rejects:
            undecodable[r.part] = r.detail
            out.rejects.append(_reject(parts[r.part], r.part, r.detail))
    for i, part in enumerate(parts):
        if i in proto_traces:
            continue
        try:
            decoded = _decode_one(part)
        except (DecodeError, ValueError) as exc:
            reason = f"{'JSON' if part.content_type == JSON else 'protobuf'}: {exc}"
            undecodable[i] = reason
            out.rejects.append(_reject(part, i, reason))
            continue
        out.extend(decoded, part=i)
    return out, [p.source for p in parts], undecodable


def merge_groups(groups: list[DecodedGroup]) -> DecodedGroup:
    """Decoded single requests (one part each, as the receiver decodes them on arrival) as one
    group: the i-th becomes part i."""
    if len(groups) == 1:
        return groups[0]
    out = Decoded()
    sources: list[BatchSource] = []
    undecodable: dict[int, str] = {}
    for i, (decoded, (source,), bad) in enumerate(groups):
        out.extend(decoded, part=i)
        sources.append(source)
        if 0 in bad:
            undecodable[i] = bad[0]
    return out, sources, undecodable


_TOP_KEYS = {Signal.TRACES: "resourceSpans", Signal.LOGS: "resourceLogs",
             Signal.METRICS: "resourceMetrics"}


def _decode_one(part: Part) -> Decoded:
    if part.content_type == PROTOBUF:
        return decode_request(parse(part.signal, part.body), "request")
    try:
        doc = orjson.loads(part.body) if part.body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(doc, dict):
        raise ValueError("the body is not a JSON object")
    if _TOP_KEYS[part.signal] not in doc:
        return Decoded()  # an empty request (unknown fields are ignored, as the spec says)
    # One request per line for the engine path. JSON strings cannot hold raw line breaks, so
    # replacing them with spaces keeps the document identical (and needs no re-encoding).
    line = part.body.strip().replace(b"\r", b" ").replace(b"\n", b" ")
    return otlp_json.decode(line, DecodeOptions(source=part.transport, signal=part.signal))


_RESPONSES: dict[Signal, tuple[type[Message], str, str]] = {
    Signal.TRACES: (trace_pb.ExportTraceServiceResponse, "rejected_spans",
                    "ExportTracePartialSuccess"),
    Signal.LOGS: (logs_pb.ExportLogsServiceResponse, "rejected_log_records",
                  "ExportLogsPartialSuccess"),
    Signal.METRICS: (metrics_pb.ExportMetricsServiceResponse, "rejected_data_points",
                     "ExportMetricsPartialSuccess"),
}


def response(signal: Signal, result: PartResult | None) -> Message:
    """The Export*ServiceResponse; `partial_success` is set only when records were refused."""
    cls, field, _ = _RESPONSES[signal]
    msg = cls()
    if result is not None and result.rejected:
        setattr(msg.partial_success, field, result.rejected)  # type: ignore[attr-defined]
        msg.partial_success.error_message = result.message()  # type: ignore[attr-defined]
    return msg


def encode(msg: Message, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(msg, indent=None).encode()
    return msg.SerializeToString()
