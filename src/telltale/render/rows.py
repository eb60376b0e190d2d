"""Any analysis result as rows → a terminal table, JSON or CSV (one renderer for all).

A result hands over `Rows`: a title, ordered column names and row dicts (plus optional notes,
e.g. "12 client spans had no matching server span"). JSON keeps full precision and sorts keys;
the terminal table formats numbers for people.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


@dataclass
class Rows:
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-only detail (e.g. a summary)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows,
                "notes": self.notes, **self.extra}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def to_json(result: Rows | Sequence[Rows]) -> str:
    payload: Any = result.to_dict() if isinstance(result, Rows) else [r.to_dict() for r in result]
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                        | orjson.OPT_SERIALIZE_NUMPY).decode()


def to_csv(result: Rows) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=result.columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in result.columns})
    return out.getvalue()


def print_table(result: Rows, console: Console, limit: int | None = None) -> None:
    table = Table(title=result.title)
    for col in result.columns:
        numeric = any(isinstance(r.get(col), int | float) and not isinstance(r.get(col), bool)
                      for r in result.rows[:50])
        table.add_column(col, justify="right" if numeric else "left", overflow="fold")
    shown = result.rows if limit is None else result.rows[:limit]
    for row in shown:
        table.add_row(*(_cell(row.get(c)) for c in result.columns))
    console.print(table)
    if limit is not None and len(result.rows) > limit:
        console.print(f"[dim]… {len(result.rows) - limit:,} more rows (use --format json/csv)[/dim]")
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]")
