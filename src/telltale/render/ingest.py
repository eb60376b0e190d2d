"""Per-source ingest summary."""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from telltale.ingest import SourceResult


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
    for col in ("source", "format", "read", "stored", "quarantined", "by reason"):
        t.add_column(col, justify="right" if col in {"read", "stored", "quarantined"} else "left")
    for r in results:
        rep = r.report
        if r.error or rep is None:
            t.add_row(r.source, "-", "-", "-", "-", f"[red]error: {r.error}[/red]")
            continue
        if rep.already_ingested:
            t.add_row(r.source, r.format.value if r.format else "?", "-", "-", "-",
                      f"already ingested (batch {rep.batch_id}); nothing stored again")
            continue
        reasons = ", ".join(f"{k.value} {v:,}" for k, v in
                            sorted(rep.quarantined.items(), key=lambda kv: -kv[1]))
        stored = " + ".join(f"{v:,} {k.value}" for k, v in sorted(rep.stored.items())) or "0"
        t.add_row(r.source, r.format.value if r.format else "unknown", f"{rep.records_read:,}",
                  stored, f"{rep.total_quarantined:,}", reasons)
    console.print(t)
