"""OTLP protobuf files: one Export*ServiceRequest per file, or a length-delimited stream.

Protobuf carries no type tag and all three requests share field numbers, so the signal comes
from `--signal`, then the file name (traces/spans, logs, metrics), then the content: each
candidate is parsed and the first whose leaves are well-formed wins.
"""

from __future__ import annotations

import re

from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]
from google.protobuf.message import DecodeError

from telltale.model import QuarantineReason, Signal
from telltale.normalize.options import DecodeOptions
from telltale.normalize.otlp_arrow import trace_requests
from telltale.normalize.otlp_proto import Request, decode_request, parse
from telltale.normalize.staging import Decoded, Reject

_NAME_HINTS = [
    (re.compile(r"trace|span", re.I), Signal.TRACES),
    (re.compile(r"log", re.I), Signal.LOGS),
    (re.compile(r"metric", re.I), Signal.METRICS),
]


def split_delimited(data: bytes) -> list[bytes] | None:
    """Frames of a varint-length-delimited stream, or None if the lengths do not tile the data."""
    frames: list[bytes] = []
    pos = 0
    try:
        while pos < len(data):
            length, pos = _DecodeVarint(data, pos)
            if length <= 0 or pos + length > len(data):
                return None
            frames.append(data[pos:pos + length])
            pos += length
    except (IndexError, DecodeError):
        return None
    return frames if len(frames) > 1 or (frames and pos == len(data)) else None


def _plausible(signal: Signal, req: Request) -> bool:
    """Do the parsed leaves look like this signal (not another signal read with its schema)?"""
    if signal is Signal.TRACES:
        spans = [s for r in req.resource_spans for ss in r.scope_spans for s in ss.spans]  # type: ignore[union-attr]
        return bool(spans) and all(len(s.trace_id) == 16 and s.name for s in spans)
    if signal is Signal.METRICS:
        metrics = [m for r in req.resource_metrics for sm in r.scope_metrics for m in sm.metrics]  # type: ignore[union-attr]
        return bool(metrics) and all(m.name and m.WhichOneof("data") for m in metrics)
    logs = [x for r in req.resource_logs for sl in r.scope_logs for x in sl.log_records]  # type: ignore[union-attr]
    return bool(logs) and all(x.time_unix_nano or x.observed_time_unix_nano for x in logs)


def infer_signal(payload: bytes, options: DecodeOptions) -> Signal | None:
    if options.signal is not None:
        return options.signal
    for pattern, signal in _NAME_HINTS:
        if pattern.search(options.source.rsplit("/", 1)[-1]):
            return signal
    for signal in (Signal.TRACES, Signal.METRICS, Signal.LOGS):
        try:
            if _plausible(signal, parse(signal, payload)):
                return signal
        except DecodeError:
            continue
    return None


def _reads_as_request(payload: bytes, options: DecodeOptions) -> bool:
    signal = infer_signal(payload, options)
    if signal is None:
        return False
    try:
        return _plausible(signal, parse(signal, payload))
    except DecodeError:
        return False


def _framing(data: bytes, options: DecodeOptions) -> tuple[list[bytes], bool]:
    """(messages, framed). Lengths can tile a single message by chance, and a stream can hold
    one message, so the tiling alone does not decide: the reading that yields a request does."""
    frames = split_delimited(data)
    if frames is None:
        return [data], False
    if _reads_as_request(frames[0], options):
        return frames, True
    if len(frames) > 1 and not _reads_as_request(data, options):
        return frames, True
    return [data], False


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    frames, framed = _framing(data, options)
    out = Decoded()
    signal = infer_signal(frames[0], options) if frames else None
    prefixes = [f"message {i}" if framed else "message" for i in range(1, len(frames) + 1)]
    if signal is Signal.TRACES:
        traces, rejects = trace_requests(frames, prefixes)
        out.proto_traces += [traces] if traces is not None else []
        out.rejects += rejects
        return out
    for frame, pos in zip(frames, prefixes, strict=True):
        if signal is None:
            out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.UNPARSABLE,
                                      frame.hex()[:65536], "not an OTLP Export*ServiceRequest"))
            continue
        try:
            req = parse(signal, frame)
        except DecodeError as exc:
            out.rejects.append(Reject(signal, pos, QuarantineReason.UNPARSABLE,
                                      frame.hex()[:65536], f"protobuf: {exc}"))
            continue
        out.extend(decode_request(req, pos))
    return out
