"""Per-source ingest summary."""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from telltale.ingest import SourceResult
from telltale.model import Signal
from telltale.render import source_label


def result_dict(r: SourceResult) -> dict[str, Any]:
    rep = r.report
    return {
        "source": r.source,
        "format": r.format.value if r.format else None,
        "detected": r.evidence,
        "error": r.error,
        "batch": rep.batch_id if rep else None,
        "already_ingested": rep.already_ingested if rep else False,
        "read": rep.records_read if rep else 0,
        "stored": {k.value: v for k, v in sorted(rep.stored.items())} if rep else {},
        "quarantined": {k.value: v for k, v in sorted(rep.quarantined.items())} if rep else {},
    }


def to_json(results: list[SourceResult]) -> str:
    return orjson.dumps([result_dict(r) for r in results],
                        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def print_table(results: list[SourceResult], console: Console) -> None:
    t = Table(title="ingest summary")
    t.add_column("source", overflow="fold")
    t.add_column("format")
    for col in ("read", "spans", "logs", "points", "quarantined"):
        t.add_column(col, justify="right")
    t.add_column("quarantined by reason", overflow="fold")
    for r in results:
        rep = r.report
        fmt = r.format.value if r.format else "unknown"
        if r.error or rep is None:
            t.add_row(source_label(r.source), "-", "", "", "", "", "", f"[red]error: {r.error}[/red]")
            continue
        if rep.already_ingested:
            t.add_row(source_label(r.source), fmt, "", "", "", "", "",
                      f"[dim]already ingested (batch {rep.batch_id}): nothing stored twice[/dim]")
            continue
        reasons = ", ".join(f"{k.value} {v:,}" for k, v in
                            sorted(rep.quarantined.items(), key=lambda kv: -kv[1]))
        q = rep.total_quarantined
        t.add_row(source_label(r.source), fmt, f"{rep.records_read:,}",
                  *(f"{rep.stored.get(sig, 0):,}" for sig in Signal),
                  f"[red]{q:,}[/red]" if q else "0", reasons)
    console.print(t)
