"""Coverage-guided fuzzing (atheris) of the receiver's decode-and-commit path.

Run:  pip install atheris
      python bench/fuzz_atheris.py [-runs=20000] [-max_total_time=300] [CORPUS_DIR ...]

Each input is one request: its first byte picks the signal and the content type, the rest is the
body. It goes through `decode_group` and `Store.commit_parts` (an in-memory store) exactly as the
receiver's committer runs them. Any exception is a finding: the receiver would answer 503 to a
request it can never accept (and to every request grouped with it), or lose its committer. A
part refused as undecodable must say why, and every report must balance (read = stored +
quarantined). Seed inputs (one valid request per signal and content type) are written to a
fresh corpus directory when none is given; libFuzzer flags (-runs, -max_total_time, -jobs...)
pass through.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from telltale.model import Signal
    from telltale.serve.decode import JSON, PROTOBUF, Part, decode_group
    from telltale.store import Store

KINDS = [(s, c) for s in Signal for c in (PROTOBUF, JSON)]
STORE = Store(":memory:")


def one_input(data: bytes) -> None:
    if not data:
        return
    signal, content_type = KINDS[data[0] % len(KINDS)]
    part = Part(signal, data[1:], content_type, "otlp-http")
    decoded, sources, undecodable = decode_group([part])
    (report,) = STORE.commit_parts(decoded, sources)
    if 0 in undecodable:
        assert undecodable[0].strip(), "a refused request must say why"
        assert report.total_stored == 0 or report.already_ingested
    assert report.records_read == report.total_stored + report.total_quarantined


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId")
                else _hex_ids(v) for k, v in node.items()}
    return [_hex_ids(v) for v in node] if isinstance(node, list) else node


def _seeds() -> list[bytes]:
    now = time.time_ns()
    traces = ExportTraceServiceRequest()
    rs = traces.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc"
    span = rs.scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="op",
                                          kind=2, start_time_unix_nano=now,
                                          end_time_unix_nano=now + 1000)
    span.attributes.add(key="n").value.int_value = 7
    span.attributes.add(key="list").value.array_value.values.add().string_value = "x"
    span.events.add(name="e", time_unix_nano=now)
    logs = ExportLogsServiceRequest()
    rec = logs.resource_logs.add().scope_logs.add().log_records.add(
        time_unix_nano=now, severity_number=9, trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    rec.body.string_value = "hello"
    rec.attributes.add(key="k").value.double_value = 1.5
    metrics = ExportMetricsServiceRequest()
    sm = metrics.resource_metrics.add().scope_metrics.add()
    sm.metrics.add(name="g").gauge.data_points.add(as_double=1.0, time_unix_nano=now)
    s = sm.metrics.add(name="s").sum
    s.data_points.add(as_int=3, time_unix_nano=now)
    s.is_monotonic = True
    h = sm.metrics.add(name="h").histogram.data_points.add(count=2, time_unix_nano=now)
    h.bucket_counts.extend([1, 1])
    h.explicit_bounds.append(10.0)
    out = []
    for i, (signal, content_type) in enumerate(KINDS):
        msg = {Signal.TRACES: traces, Signal.LOGS: logs, Signal.METRICS: metrics}[signal]
        if content_type == PROTOBUF:
            body = msg.SerializeToString()
        else:  # OTLP/JSON: the protobuf JSON mapping with hex ids and integer enums
            doc = json_format.MessageToDict(msg, use_integers_for_enums=True)
            body = json.dumps(_hex_ids(doc)).encode()
        out.append(bytes([i]) + body)
    return out


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="telltale-fuzz-corpus-"))
        for i, seed in enumerate(_seeds()):
            (corpus / f"seed-{i}").write_bytes(seed)
        argv.append(str(corpus))
        print(f"corpus: {corpus}", flush=True)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
