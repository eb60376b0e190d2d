"""Log templates over a store: the persisted miner, and re-assigning stored records.

The miner itself (masking, Drain-style clustering, stable ids, parameter extraction) is pure and
lives in normalize/log_miner.py, because the store's write path runs it on every committed
batch (store/log_assign.py); this module re-exports it for analyses and commands."""

from __future__ import annotations

from dataclasses import dataclass

from telltale.normalize.log_miner import (
    SIMILARITY,
    WILDCARD,
    Template,
    TemplateMiner,
    collapse_text,
    mask,
    param_regex,
)
from telltale.render.rows import Rows
from telltale.store import Store, log_assign
from telltale.store import log_templates_sql as sql

__all__ = [
    "SIMILARITY",
    "WILDCARD",
    "Reindexed",
    "Template",
    "TemplateMiner",
    "collapse_text",
    "load_miner",
    "mask",
    "param_regex",
    "reindex",
    "save_miner",
]


def load_miner(store: Store) -> TemplateMiner:
    """A miner holding the store's persisted templates (none yet: an empty miner)."""
    miner = TemplateMiner()
    if store.query(sql.EXISTS)[0][0]:
        miner.load(store.query(sql.LOAD))
    return miner


def save_miner(store: Store, miner: TemplateMiner) -> None:
    """Persist every template (widened text and counters; ids never change). Needs a writable store."""
    store.con.execute(sql.CREATE)
    log_assign.save_templates(store.con, miner.rows())
    miner.dirty.clear()


@dataclass
class Reindexed:
    """What `reindex` did: records given a template, batches visited, templates before/after."""

    records: int
    batches: int
    templates_before: int
    templates_after: int
    all_records: bool

    def to_rows(self) -> Rows:
        what = "all stored log records" if self.all_records else "log records without a template"
        return Rows(
            title="Log template re-assignment",
            columns=["records", "batches", "templates_before", "templates_after"],
            rows=[{"records": self.records, "batches": self.batches,
                   "templates_before": self.templates_before,
                   "templates_after": self.templates_after}],
            notes=[f"assigned {what}; template ids are kept, new events get new ids"])


def reindex(store: Store, *, all_records: bool = False,
            batches_per_step: int = log_assign.BATCHES_PER_STEP) -> Reindexed:
    """Give stored log records their template ids and parameters.

    By default only batches that have none (stores written before templates were assigned at
    ingest). `all_records` re-assigns every record against the current templates: ids stay,
    counters are recounted, and parameters are re-extracted so they line up with the templates'
    current slots (a template that widened since has more slots than its old records' params).
    Each step of `batches_per_step` batches is one transaction (records and templates together)."""
    before = log_assign.template_count(store.con)
    records, batches = log_assign.reassign(store.con, store.path, all_records=all_records,
                                           batches_per_step=batches_per_step)
    return Reindexed(records, batches, before, log_assign.template_count(store.con), all_records)
