"""Phases of a window: when each root operation (a request type, a CI job, an agent task)
was running. The window is cut into equal buckets; consecutive buckets with root spans of an
operation form one phase, so a batch that ran twice shows as two bars. Feeds the gantt of a
window (render/mermaid_trace.py `phases_gantt`)."""

from __future__ import annotations

from dataclasses import dataclass

from telltale.analyses.scope import Scope
from telltale.store import Store, phases_sql

DEFAULT_BUCKETS = 60


@dataclass(frozen=True)
class Phase:
    service: str
    operation: str
    start_ns: int  # first root start in the phase
    end_ns: int  # last root end
    roots: int
    errors: int


@dataclass(frozen=True)
class Phases:
    scope: Scope
    start_ns: int  # of the drawn range: the first root start
    end_ns: int
    bucket_ns: int
    phases: list[Phase]  # by service, operation, start

    @property
    def operations(self) -> list[tuple[str, str]]:
        return sorted({(p.service, p.operation) for p in self.phases})


def phases(store: Store, scope: Scope, *, buckets: int = DEFAULT_BUCKETS) -> Phases:
    """Phases of every root operation whose root spans start in `scope`."""
    found = phases_sql.bounds(store.con, scope)
    if found is None:
        return Phases(scope, 0, 0, 1, [])
    lo, hi = found
    width = max(1, -(-(hi - lo) // max(buckets, 1)))
    out: list[Phase] = []
    run: list[tuple[int, int, int, int, int]] = []
    key: tuple[str, str] | None = None
    last_bucket = -2

    def close() -> None:
        if run and key is not None:
            out.append(Phase(key[0], key[1], min(r[3] for r in run), max(r[4] for r in run),
                             sum(r[1] for r in run), sum(r[2] for r in run)))

    for service, operation, bucket, n, errors, first, last in phases_sql.buckets(
            store.con, scope, lo, width):
        if (service, operation) != key or int(bucket) != last_bucket + 1:
            close()
            run = []
        key, last_bucket = (str(service), str(operation)), int(bucket)
        run.append((int(bucket), int(n), int(errors), int(first), int(last)))
    close()
    return Phases(scope, lo, hi, width, out)
