"""What an analysis looks at: a time window and optional service / operation filters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """Spans whose start lies in [since, until) (None: open), of these services / operations
    (empty: all). Pure data; `store.scope_sql.span_filter` turns it into bound SQL."""

    since: int | None = None
    until: int | None = None
    services: tuple[str, ...] = ()
    operations: tuple[str, ...] = ()

    def with_window(self, since: int | None, until: int | None) -> Scope:
        return Scope(since, until, self.services, self.operations)
