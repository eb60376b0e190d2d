"""OTLP JSON lines split over the data's own buffer route every line exactly as the line-by-line
path does (which stays the path for data that is not UTF-8)."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from telltale.normalize import otlp_json
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded

TRACE = ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",'
         '"spanId":"eee19b7ec3c1b174","name":"x","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}')
LOG = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1","body":{"stringValue":"é"}}]}]}]}'
METRIC = ('{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":'
          '[{"asDouble":1.5,"timeUnixNano":"1"}]}}]}]}]}')
LINES = [TRACE, LOG, METRIC, "", "   ", "\t", TRACE + "\r", "{torn", '{"resourceMetrics": nope}',
         "x" * 5000, "日本語"]


def _tables(tables: list[pa.Table]) -> list[tuple[int, str]]:
    rows: list[tuple[int, str]] = []
    for t in tables:
        rows += [(int(n), str(s).rstrip("\n")) for n, s in
                 zip(t["LineNo"].to_pylist(), t["Line"].to_pylist(), strict=True)]
    return rows


def _line_by_line(data: bytes, first: int) -> Decoded:
    out = Decoded()
    otlp_json._route_lines(otlp_json._lines(data, out, first), out)
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(LINES), min_size=1, max_size=30), st.booleans(),
       st.integers(min_value=1, max_value=1000))
def test_split_lines_route_as_line_by_line(lines: list[str], trailing: bool, first: int) -> None:
    data = ("\n".join(lines) + ("\n" if trailing else "")).encode()
    if data.lstrip().startswith(b"{") and not data.lstrip().split(b"\n")[0].rstrip().endswith(b"}"):
        return  # read as one pretty-printed document, not as lines
    fast = otlp_json.decode(data, DecodeOptions(source="t", first_line=first))
    slow = _line_by_line(data, first)
    assert _tables(fast.json_trace_lines) == _tables(slow.json_trace_lines)
    assert _tables(fast.json_log_lines) == _tables(slow.json_log_lines)
    assert [(r.position, r.reason, r.raw) for r in fast.rejects] == \
        [(r.position, r.reason, r.raw) for r in slow.rejects]
    assert {k: sum(t.num_rows for t in v) for k, v in fast.metrics.items()} == \
        {k: sum(t.num_rows for t in v) for k, v in slow.metrics.items()}


def test_lines_share_the_data_buffer_and_keep_their_numbers() -> None:
    data = f"{TRACE}\n\n{TRACE}\r\n".encode()
    arr = otlp_json.line_array(data)
    assert arr is not None and arr.to_pylist() == [TRACE + "\n", "\n", TRACE + "\r\n"]
    out = otlp_json.decode(data, DecodeOptions(source="t", first_line=7))
    assert _tables(out.json_trace_lines) == [(7, TRACE), (9, TRACE + "\r")]


def test_data_that_is_not_utf8_goes_line_by_line() -> None:
    data = TRACE.encode() + b"\n\xff\xfe broken\n" + TRACE.encode()
    assert otlp_json.line_array(data) is None
    out = otlp_json.decode(data, DecodeOptions(source="t"))
    assert _tables(out.json_trace_lines) == [(1, TRACE), (3, TRACE)]
    assert [(r.position, r.reason.value) for r in out.rejects] == [("line 2", "bad_encoding")]
