"""Evaluate root-cause ranking on a directory laid out like Nezha's (FSE'23) fault data.

Layout: `fault_list.json` (`{"HH": [{"inject_time": "YYYY-MM-DD HH:MM:SS" (UTC), "inject_pod",
"inject_type"}, ...]}` or a plain list of such entries), `trace/*.csv[.gz]` (one span per row,
read with the `nezha` CSV preset), optional `metric/*.csv[.gz]` (per-pod minutes), optional
`log/*.csv[.gz]`, optional `baseline/` with the same sub-folders for a fault-free window.

Each fault's incident is [inject_time, inject_time + window) — the data's own range cuts it
shorter where the files end. Its baseline is the `baseline/` traces' time range when there is
one, else the `baseline_ns` before the fault. With `pre_reference_ns`, the data in that stretch
just before each fault is a second reference the changes must also hold against (see
`rank_root_causes(references=...)`); off by default, because on the Train-Ticket day code faults
show up to a minute *before* their recorded inject_time, so that stretch is not fault-free there.
The injected service is the pod name without its replica suffixes. AS@k is the share of faults
whose injected service ranks in the top k, overall and per fault type.
`inject_timestamp` is not used: the data set's own notes say it is inconsistent.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from telltale.analyses.rootcause import MINUTE_NS, rank_root_causes
from telltale.analyses.scope import Scope
from telltale.ingest import ingest_paths
from telltale.model import Format
from telltale.normalize import nezha_logs, nezha_metrics
from telltale.normalize.csv_spans import PRESETS
from telltale.normalize.staging import Decoded
from telltale.render.rows import Rows
from telltale.store import Store, rootcause_sql

KS = (1, 3, 5)


@dataclass(frozen=True)
class Fault:
    inject_ns: int
    pod: str
    service: str
    kind: str


@dataclass(frozen=True)
class FaultResult:
    fault: Fault
    rank: int | None  # None: the service never appeared in the ranking
    top: list[str]
    spans: int


@dataclass(frozen=True)
class NezhaEvaluation:
    directory: str
    results: list[FaultResult]
    baseline: str

    def as_at(self, k: int) -> float:
        hits = sum(1 for r in self.results if r.rank is not None and r.rank <= k)
        return 100.0 * hits / len(self.results) if self.results else 0.0

    def summary(self) -> dict[str, Any]:
        return {"faults": len(self.results), **{f"AS@{k}": round(self.as_at(k), 2) for k in KS}}

    def by_type(self) -> dict[str, dict[str, Any]]:
        """The summary per fault type (CPU faults and code faults leave very different traces)."""
        kinds = sorted({r.fault.kind for r in self.results})
        return {kind: NezhaEvaluation(self.directory, [r for r in self.results
                                                       if r.fault.kind == kind],
                                      self.baseline).summary() for kind in kinds}

    def to_rows(self) -> Rows:
        rows = [{"inject_time": _iso(r.fault.inject_ns), "type": r.fault.kind,
                 "service": r.fault.service, "rank": r.rank, "spans": r.spans,
                 "top3": ", ".join(r.top[:3])} for r in self.results]
        s = self.summary()
        notes = [f"{s['faults']} faults: AS@1 {s['AS@1']:.2f} %, AS@3 {s['AS@3']:.2f} %, "
                 f"AS@5 {s['AS@5']:.2f} %  (baseline: {self.baseline})"]
        notes += [f"  {kind}: {t['faults']} faults, AS@1 {t['AS@1']:.2f} %, AS@3 {t['AS@3']:.2f} %, "
                  f"AS@5 {t['AS@5']:.2f} %" for kind, t in self.by_type().items()]
        return Rows(f"Root-cause ranking on {self.directory}",
                    ["inject_time", "type", "service", "rank", "spans", "top3"], rows, notes,
                    {**s, "baseline": self.baseline, "by_type": self.by_type(), "details": [
                        {"inject_time": _iso(r.fault.inject_ns), "type": r.fault.kind,
                         "pod": r.fault.pod, "service": r.fault.service, "rank": r.rank,
                         "spans": r.spans, "top": r.top} for r in self.results]})


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def load_faults(directory: Path) -> list[Fault]:
    path = directory / "fault_list.json"
    if not path.is_file():
        raise ValueError(f"{directory} has no fault_list.json")
    doc = orjson.loads(path.read_bytes())
    entries = [e for group in doc.values() for e in group] if isinstance(doc, dict) else doc
    faults = []
    for e in entries:
        when = dt.datetime.fromisoformat(str(e["inject_time"])).replace(tzinfo=dt.UTC)
        pod = str(e["inject_pod"])
        faults.append(Fault(int(when.timestamp()) * 10**9, pod,
                            nezha_metrics.service_of_pod(pod), str(e.get("inject_type", ""))))
    return sorted(faults, key=lambda f: f.inject_ns)


def _files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.is_file() and ".csv" in p.name)


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _commit(store: Store, path: Path, decode: Callable[[bytes, str], Decoded], fmt: str) -> None:
    data = _read(path)
    store.commit(decode(data, path.name), source=str(path), fmt=fmt,
                 content_hash=f"{hashlib.sha256(data).hexdigest()}:{fmt}")


def load_directory(store: Store, directory: Path) -> tuple[int, int] | None:
    """Ingest traces, metrics and logs (and baseline/'s); returns baseline/'s span time range."""
    for root in (directory, directory / "baseline"):
        traces = [str(p) for p in _files(root / "trace")]
        results = ingest_paths(store, traces, fmt=Format.CSV_SPANS,
                               mapping=dict(PRESETS["nezha"])) if traces else []
        failed = [r.error for r in results if r.error]
        if failed:
            raise ValueError(failed[0])
        for path in _files(root / "metric"):
            _commit(store, path, nezha_metrics.decode, "nezha-metrics")
        for path in _files(root / "log"):
            _commit(store, path, nezha_logs.decode, "nezha-logs")
        if root.name == "baseline" and results:
            batches = [r.report.batch_id for r in results if r.report and r.report.batch_id]
            lo, hi = rootcause_sql.batch_range(store.con, batches)
            if lo is not None and hi is not None:
                return lo, hi + 1
    return None


def evaluate_nezha(directory: Path | str, *, window_ns: int = 3 * MINUTE_NS,
                   baseline_ns: int = 5 * MINUTE_NS, pre_reference_ns: int = 0,
                   store_path: Path | None = None,
                   on_fault: Callable[[FaultResult], None] | None = None) -> NezhaEvaluation:
    """Build a temporary store from `directory`, rank every fault, and score the ranking."""
    root = Path(directory)
    faults = load_faults(root)
    with (tempfile.TemporaryDirectory(prefix="telltale-nezha-") as tmp,
          Store(store_path or Path(tmp) / "nezha.duckdb") as store):
        base_range = load_directory(store, root)
        results = []
        for fault in faults:
            incident = Scope(fault.inject_ns, fault.inject_ns + window_ns)
            baseline = (Scope(*base_range) if base_range
                        else Scope(fault.inject_ns - baseline_ns, fault.inject_ns))
            pre = Scope(fault.inject_ns - pre_reference_ns, fault.inject_ns)
            ranking = rank_root_causes(store, incident, baseline,
                                       references=(pre,) if base_range and pre_reference_ns else ())
            spans = sum(r.evidence.spans_incident for r in ranking.ranked)
            result = FaultResult(fault, ranking.rank_of(fault.service),
                                 [r.service for r in ranking.ranked[:5]], spans)
            results.append(result)
            if on_fault is not None:
                on_fault(result)
    how = (f"baseline/ ({_iso(base_range[0])} to {_iso(base_range[1])})" if base_range
           else f"the {baseline_ns // MINUTE_NS} minutes before each fault")
    if base_range and pre_reference_ns:
        how += f", held against the {pre_reference_ns / 1e9:g} s before each fault"
    return NezhaEvaluation(str(root), results, how)
