"""Quality report as a rich table, JSON (golden-testable: sorted, no clocks) or CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from telltale.analyses.quality import GroupBy, GroupQuality, QualityCounts, QualityReport
from telltale.model import QualityFlag
from telltale.recorder.spool import SpoolStatus
from telltale.render import source_label


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _score(s: float | None) -> str:
    return "-" if s is None else f"{s:.3f}"


def _counts_dict(c: QualityCounts) -> dict[str, Any]:
    return {
        "received": c.received,
        "stored": c.stored,
        "quarantined": dict(sorted((k.value, v) for k, v in c.quarantined.items() if v)),
        "flags": {f.value: c.flags.get(f, 0) for f in QualityFlag},
        "good": c.good,
        "score": None if c.score is None else round(c.score, 6),
    }


def _group_dict(g: GroupQuality) -> dict[str, Any]:
    return {
        "key": g.key,
        "spans": _counts_dict(g.spans),
        "logs_stored": g.logs_stored,
        "metrics_stored": g.metrics_stored,
        "other_quarantined": dict(sorted((k.value, v) for k, v in g.other_quarantined.items())),
        "buckets": [{"start": iso(b), **_counts_dict(c)} for b, c in g.buckets.items()],
    }


def _recorder_dict(status: SpoolStatus) -> dict[str, Any]:
    lost = {r: n for r, n in status.dropped.items() if r not in _NOT_LOST}
    return {"processes": status.processes, "written": status.written,
            "not_written": lost, "not_written_total": sum(lost.values()),
            "coerced_values": status.dropped.get("coerced_values", 0),
            "unreadable_status_lines": status.unreadable_lines}


def to_json(report: QualityReport, recorder: SpoolStatus | None = None) -> str:
    doc: dict[str, Any] = {
        "by": report.by.value,
        "since": iso(report.since),
        "until": iso(report.until),
        "bucket_seconds": report.bucket_ns // 1_000_000_000,
        "total": _counts_dict(report.total),
        "groups": [_group_dict(g) for g in report.groups],
    }
    if recorder is not None:
        doc["recorder"] = _recorder_dict(recorder)
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def to_csv(report: QualityReport) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    flags = [f.value for f in QualityFlag]
    w.writerow([report.by.value, "bucket_start", "received", "stored", "quarantined", *flags,
                "good", "score"])
    for g in report.groups:
        rows = [("all", g.spans), *((iso(b), c) for b, c in g.buckets.items())]
        for label, c in rows:
            w.writerow([g.key, label, c.received, c.stored, sum(c.quarantined.values()),
                        *(c.flags.get(QualityFlag(f), 0) for f in flags), c.good,
                        _score(c.score)])
    return out.getvalue()


def _sparkline(g: GroupQuality) -> str:
    blocks = " ▁▂▃▄▅▆▇█"
    chars = []
    for c in g.buckets.values():
        s = c.score
        # Zero still draws the lowest bar, so a bad bucket is visible, not blank.
        chars.append("·" if s is None else blocks[max(1, min(8, int(s * 8 + 0.5)))])
    return "".join(chars)


def print_table(report: QualityReport, console: Console) -> None:
    t = Table(title=f"Trace quality by {report.by.value} "
                    f"({iso(report.since)} → {iso(report.until)}, "
                    f"buckets of {report.bucket_ns // 1_000_000_000}s)")
    t.add_column(report.by.value, overflow="fold")
    for col in ("received", "stored", "quarantined", "orphan", "dup", "skew", "no root",
                "score", "over time"):
        t.add_column(col, justify="right" if col != "over time" else "left")
    # Sources/services without trace records (logs or metrics only) are summed up below.
    groups = [g for g in report.groups if g.spans.received]
    for g in [*groups, None]:
        c = report.total if g is None else g.spans
        q = sum(c.quarantined.values())
        label = ("[b]all[/b]" if g is None
                 else source_label(g.key) if report.by is GroupBy.SOURCE else g.key)
        t.add_row(
            label, f"{c.received:,}",
            f"{c.stored:,}",
            f"{q:,}" if not q else f"[red]{q:,}[/red]",
            *(f"{c.flags.get(f, 0):,}" for f in QualityFlag),
            _score(c.score), "" if g is None else _sparkline(g),
            end_section=bool(groups) and g is groups[-1],
        )
    console.print(t)
    reasons = report.total.quarantined
    if reasons:
        console.print("quarantined by reason: " + ", ".join(
            f"{k.value} {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))
    others = [(g.key, g.logs_stored, g.metrics_stored, sum(g.other_quarantined.values()))
              for g in report.groups if g.logs_stored or g.metrics_stored or g.other_quarantined]
    if others:
        logs = sum(o[1] for o in others)
        metrics = sum(o[2] for o in others)
        bad = sum(o[3] for o in others)
        console.print(f"also stored: {logs:,} log records, {metrics:,} metric points"
                      f" ({bad:,} quarantined)")


# Counted by the recorder but not losses: the event was written, a value as its repr.
_NOT_LOST = {"coerced_values"}


def print_recorder(spool: str, status: SpoolStatus, console: Console) -> None:
    """The recorder's own losses: events that never reached the spool, by reason."""
    lost = {r: n for r, n in status.dropped.items() if r not in _NOT_LOST}
    text = ", ".join(f"{reason} {n:,}" for reason, n in lost.items()) or "none"
    style = "red" if lost else "green"
    coerced = status.dropped.get("coerced_values", 0)
    console.print(f"recorder spool {spool}: {status.written:,} events written by "
                  f"{status.processes} process(es); [{style}]not written: {text}[/{style}]"
                  + (f"; {coerced:,} values written as text (not JSON-able)" if coerced else ""))
