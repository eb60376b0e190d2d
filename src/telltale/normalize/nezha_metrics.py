"""Decode Nezha's per-pod metric CSVs (`metric/<pod>_metric.csv.gz`) into gauge points.

One row is one pod-minute: `Time` (a Go time string, ignored), `TimeStamp` (epoch seconds, the
column to trust), `PodName`, then one numeric column per measurement (CpuUsage(m),
PodServerLatencyP90(s), PodSuccessRate(%)...). Each numeric cell becomes one gauge point named
after its column, with ServiceName = the pod name without its replica suffixes and the pod in
`k8s.pod.name`. A file without `PodName` (Nezha's `front_service.csv`) names its service in a
`ServiceName` column instead. Empty and NaN cells are "no measurement that minute" (the exporter
writes them when a pod served nothing), not records, so they produce no point.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from telltale.model import MetricType, QuarantineReason, Signal
from telltale.normalize import staging
from telltale.normalize.csv_spans import SERVICE_RULES
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

_TIME_COLUMNS = ("Time", "TimeStamp")
_NAME_COLUMNS = ("PodName", "ServiceName")
_POD_RULE = re.compile(SERVICE_RULES["k8s-pod"])
SCOPE_NAME = "nezha/metrics"


def service_of_pod(pod: str) -> str:
    """`ts-basic-service-5dc8d4f9fd-46997` → `ts-basic-service` (a name without a suffix stays)."""
    found = _POD_RULE.search(pod)
    return found.group(1) if found and found.group(1) else pod


def _reject(data: bytes, detail: str, reason: QuarantineReason) -> Decoded:
    return Decoded(rejects=[Reject(Signal.METRICS, "document", reason,
                                   data[:1 << 20].decode("utf-8", "replace"), detail)])


def decode(data: bytes, options: DecodeOptions | str = "-") -> Decoded:
    # `telltale ingest` passes its DecodeOptions; the Nezha evaluation passes a source name.
    source = options.source if isinstance(options, DecodeOptions) else options
    """CSV bytes → staged gauge points (a file that is not such a CSV is one reject)."""
    if not data.strip():
        return Decoded()
    try:
        table = pacsv.read_csv(pa.py_buffer(data), convert_options=pacsv.ConvertOptions(
            column_types={"PodName": pa.string(), "ServiceName": pa.string(),
                          "Time": pa.string(), "TimeStamp": pa.float64()}))
    except pa.ArrowInvalid as exc:
        return _reject(data, f"not CSV: {exc}", QuarantineReason.UNPARSABLE)
    names = [c for c in _NAME_COLUMNS if c in table.column_names]
    if "TimeStamp" not in table.column_names or not names:
        return _reject(data, f"{source}: needs TimeStamp and PodName or ServiceName columns "
                       f"(header: {', '.join(table.column_names)})", QuarantineReason.BAD_SHAPE)
    who = pc.cast(table.column(names[0]), pa.string()).combine_chunks()
    pods = who.to_pylist()
    services = [service_of_pod(p) if names[0] == "PodName" and p else (p or "") for p in pods]
    seconds = pc.cast(table.column("TimeStamp"), pa.float64()).to_numpy(zero_copy_only=False)
    value_columns = [c for c in table.column_names if c not in _TIME_COLUMNS + _NAME_COLUMNS
                     and (pa.types.is_floating(table.schema.field(c).type)
                          or pa.types.is_integer(table.schema.field(c).type))]
    n = table.num_rows
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []
    for column in value_columns:
        values = pc.cast(table.column(column), pa.float64()).to_numpy(zero_copy_only=False)
        keep = ~np.isnan(values) & ~np.isnan(seconds)
        parts.append((column, np.flatnonzero(keep), values))
    rows = np.concatenate([idx for _, idx, _ in parts]) if parts else np.array([], np.int64)
    if len(rows) == 0:
        return Decoded()
    metric_names = np.concatenate([np.full(len(idx), col, dtype=object) for col, idx, _ in parts])
    values = np.concatenate([vals[idx] for _, idx, vals in parts])
    time_ns = np.round(seconds[rows] * 1e9).astype(np.int64)
    service_arr = pa.array(services, pa.string())
    resource = pa.MapArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32) * (2 if names[0] == "PodName" else 1)),
        pa.array(["service.name", "k8s.pod.name"] * n if names[0] == "PodName"
                 else ["service.name"] * n, pa.string()),
        pa.array([v for s, p in zip(services, pods, strict=True)
                  for v in ((s, p or "") if names[0] == "PodName" else (s,))], pa.string()),
        type=staging.ATTRS)
    take = pa.array(rows)
    columns: dict[str, pa.Array] = {
        "Pos": pa.array([f"row {r + 2} {m}" for r, m in zip(rows, metric_names, strict=True)],
                        pa.string()),
        "RecordBytes": pa.array(np.full(len(rows), 32, dtype=np.int64)),
        "ResourceAttributes": pc.take(resource, take),
        "ScopeName": pa.array([SCOPE_NAME] * len(rows), pa.string()),
        "ServiceName": pc.take(service_arr, take),
        "MetricName": pa.array(metric_names.tolist(), pa.string()),
        "MetricUnit": pa.array([_unit(m) for m in metric_names.tolist()], pa.string()),
        "TimeUnix": pa.array(time_ns),
        "Value": pa.array(values, pa.float64()),
    }
    schema = staging.METRICS[MetricType.GAUGE]
    out = pa.Table.from_arrays(
        [columns[f.name] if f.name in columns else pa.nulls(len(rows), f.type) for f in schema],
        schema=schema)
    return Decoded(metrics={MetricType.GAUGE: [out]})


def _unit(column: str) -> str:
    """The unit Nezha writes in brackets after a column name: `CpuUsage(m)` → `m`."""
    found = re.search(r"\(([^)]*)\)\s*$", column)
    return found.group(1) if found else ""
