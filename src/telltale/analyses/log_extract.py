"""Derive spans and metric points from logs that state a duration or a value.

A system with logs but no tracing still gets the latency profile, heatmap and timeline: a rule
(`handler {name} completed in {ms} ms`) turns each matching record into a span that *ends* at
the log's time (a completion log is written when the work is done) and lasted the captured
duration, or into a gauge point at the log's time. Each rule is one SQL statement over
`otel_logs` (log_extract_sql); its rows go through the store's single write path as their own
ingest batch (source `extract:<rule>`), so `quality` and batch listings account for them.

Re-running is idempotent: a derived span's ids are a hash of the rule name and the log row, and
a gauge point is keyed by (service, metric, time, attributes); rows already stored are counted
as `present` and not stored again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from telltale.analyses.log_extract_spec import Rule, RuleError
from telltale.analyses.scope import Scope
from telltale.model import MetricType
from telltale.normalize.staging import Decoded
from telltale.render.rows import Rows
from telltale.store import Store, log_extract_sql

_HELPER_COLUMNS = ("usable", "present")


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    target: str  # "span" or "metric"
    matched: int  # log records the pattern matched in scope
    unusable: int  # matched, but the duration / value is not a number (or is negative)
    present: int  # derived by an earlier run: not stored again
    stored: int  # stored now (with --dry-run: would be stored)
    quarantined: int = 0  # refused by the store's validation (e.g. a time out of range)
    batch_id: int | None = None


@dataclass(frozen=True)
class Extraction:
    outcomes: list[RuleOutcome]
    dry_run: bool

    def to_rows(self) -> Rows:
        rows = [{"rule": o.rule, "target": o.target, "matched": o.matched,
                 "unusable": o.unusable, "already_present": o.present,
                 "stored": o.stored, "quarantined": o.quarantined, "batch": o.batch_id}
                for o in self.outcomes]
        notes = ["dry run: nothing was written; 'stored' is what would be."] if self.dry_run else []
        if any(o.unusable for o in self.outcomes):
            notes.append("unusable: the pattern matched but the captured duration/value is not a "
                         "non-negative number; those records derive nothing.")
        return Rows("Log extraction" + (" (dry run)" if self.dry_run else ""),
                    ["rule", "target", "matched", "unusable", "already_present", "stored",
                     "quarantined", "batch"], rows, notes, {"dry_run": self.dry_run})


def check_rules(store: Store, rules: list[Rule]) -> None:
    """Refuse, with one line naming the rule, any regex the engine (RE2) cannot run."""
    for rule in rules:
        try:
            log_extract_sql.check(store.con, rule)
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            raise RuleError(f"rule {rule.name!r}: the engine refuses the regex: {message}") from exc


def derive(store: Store, rule: Rule, scope: Scope) -> pa.Table:
    """What `rule` derives from the logs in scope: staging rows plus `usable` / `present`."""
    if rule.span is not None:
        return log_extract_sql.spans(store.con, rule, scope)
    return log_extract_sql.gauges(store.con, rule, scope)


def extract(store: Store, rules: list[Rule], scope: Scope, *, dry_run: bool = False) -> Extraction:
    """Run every rule over the logs in `scope` (window and services) and store what is new."""
    check_rules(store, rules)
    outcomes = []
    for rule in rules:
        table = derive(store, rule, scope)
        usable = table["usable"]
        new = table.filter(pc.and_(usable, pc.invert(table["present"])))
        present = int(pc.sum(pc.and_(usable, table["present"])).as_py() or 0)
        target = "span" if rule.span is not None else "metric"
        outcome = RuleOutcome(rule.name, target, table.num_rows,
                              table.num_rows - int(pc.sum(usable).as_py() or 0), present,
                              new.num_rows)
        if not dry_run and new.num_rows:
            outcome = _commit(store, rule, new.drop_columns(list(_HELPER_COLUMNS)), outcome)
        outcomes.append(outcome)
    return Extraction(outcomes, dry_run)


def _commit(store: Store, rule: Rule, rows: pa.Table, outcome: RuleOutcome) -> RuleOutcome:
    decoded = (Decoded(spans=[rows]) if rule.span is not None
               else Decoded(metrics={MetricType.GAUGE: [rows]}))
    report = store.commit(decoded, source=rule.source, fmt="extract",
                          content_hash=_content_hash(rule, rows))
    return RuleOutcome(outcome.rule, outcome.target, outcome.matched, outcome.unusable,
                       outcome.present, report.total_stored, report.total_quarantined,
                       report.batch_id)


def _content_hash(rule: Rule, rows: pa.Table) -> str:
    """The rule plus exactly the rows derived (the batch's idempotency key)."""
    digest = hashlib.sha256(rule.fingerprint().encode())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    digest.update(sink.getvalue().to_pybytes())
    return f"{digest.hexdigest()}:extract"
