"""Compare (BubbleUp): what sets a selection of spans apart from the rest of the spans in scope.

The selection is errors (every failed span, or only failures that start in the span: none of
its children failed), spans slower than a threshold, and/or spans with given attribute values;
the baseline is every other span in the same scope. For each value of every span attribute,
resource attribute and a few columns (ServiceName, SpanName, SpanKind, StatusCode, ScopeName):
its share of the selection and of the baseline, the difference, the lift, and a score that
ranks over-represented values first.

Left out, with a note: keys that restate the selection (the status for an error selection,
`error.type` which semantic conventions set only on failures, the keys of `--where`), and
high-cardinality keys (ids, timestamps, amounts) that cannot characterise a group.
"""

from __future__ import annotations

from dataclasses import dataclass

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, compare_sql

# Keys that say "this failed" in other words: they would always top an error selection.
ERROR_KEYS = ("StatusCode", "error.type", "otel.status_code", "otel.status_description")
ERROR_PREFIXES = ("exception.",)
_SAME_KEY = {"ServiceName": "service.name", "service.name": "ServiceName"}


@dataclass(frozen=True)
class Selection:
    errors: bool = False
    origin_errors: bool = False  # failed spans none of whose children failed
    slower_than_ns: int | None = None
    where: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.errors or self.origin_errors or self.slower_than_ns is not None
                    or self.where)

    def describe(self) -> str:
        parts = []
        if self.origin_errors:
            parts.append("errors starting in the span")
        elif self.errors:
            parts.append("errors")
        if self.slower_than_ns is not None:
            parts.append(f"slower than {self.slower_than_ns / 1e6:g} ms")
        parts.extend(f"{k} = {v}" for k, v in self.where)
        return " and ".join(parts)

    def restated_keys(self) -> tuple[list[str], list[str]]:
        """(keys, key prefixes) that merely restate the selection criteria."""
        keys = [k for k, _ in self.where]
        keys += [_SAME_KEY[k] for k in keys if k in _SAME_KEY]
        if self.errors or self.origin_errors:
            return [*ERROR_KEYS, *keys], list(ERROR_PREFIXES)
        return keys, []


@dataclass(frozen=True)
class AttributeValue:
    source: str  # span, resource or field (a column used as an attribute)
    key: str
    value: str
    selected: int  # spans of the selection carrying this value
    baseline: int
    p_selected: float
    p_baseline: float | None  # None: the baseline is empty
    diff: float  # p_selected - p_baseline
    lift: float  # add-half smoothed p_selected / p_baseline
    score: float


@dataclass(frozen=True)
class HighCardinalityKey:
    source: str
    key: str
    distinct_values: int
    spans: int


@dataclass(frozen=True)
class Comparison:
    selection: Selection
    n_selected: int
    n_baseline: int
    values: list[AttributeValue]  # best first
    high_cardinality: list[HighCardinalityKey]
    restated: list[str]  # keys and prefixes left out as restating the selection
    propagated: int = 0  # selected errors whose own child failed (--errors only)
    log_errors: int = 0  # selected spans failed only by an attached error log (status unset)

    def to_rows(self) -> Rows:
        rows = [{"rank": i, "source": v.source, "key": v.key, "value": v.value,
                 "selected": v.selected, "baseline": v.baseline,
                 "pct_selected": v.p_selected * 100,
                 "pct_baseline": None if v.p_baseline is None else v.p_baseline * 100,
                 "diff_pts": v.diff * 100, "lift": v.lift, "score": v.score}
                for i, v in enumerate(self.values, 1)]
        notes = [f"Selection: {self.selection.describe()} — {self.n_selected:,} spans; baseline: the "
                 f"other {self.n_baseline:,} spans in scope."]
        if self.n_selected == 0:
            notes.append("Nothing matches the selection in this scope.")
        if self.propagated:
            notes.append(f"{self.propagated:,} of the selected errors only pass on a child's failure; "
                         "--origin-errors selects where failures start.")
        if self.log_errors:
            notes.append(f"{self.log_errors:,} of the selected errors have no error status: an "
                         "error-level log is attached to them.")
        if self.high_cardinality:
            keys = ", ".join(f"{h.key} ({h.distinct_values:,})" for h in self.high_cardinality)
            notes.append(f"High-cardinality keys left out (distinct values): {keys}.")
        if self.restated:
            notes.append(f"Left out as restating the selection: {', '.join(self.restated)}.")
        notes.append("score = difference in proportions × (1 − min(lift, 1/lift)); "
                     "lift is add-half smoothed.")
        return Rows(f"Compare: {self.selection.describe()} vs the rest",
                    ["rank", "source", "key", "value", "selected", "baseline", "pct_selected",
                     "pct_baseline", "diff_pts", "lift", "score"], rows, notes,
                    {"n_selected": self.n_selected, "n_baseline": self.n_baseline,
                     "propagated_errors": self.propagated, "log_errors": self.log_errors,
                     "high_cardinality": [vars(h) for h in self.high_cardinality]})


def compare(store: Store, scope: Scope, selection: Selection, *, limit: int = 25,
            max_distinct_fraction: float = 0.1, min_distinct: int = 20,
            log_errors: bool = True) -> Comparison:
    """Attribute values ranked by over-representation in the selection.

    A key is high-cardinality when it has more than max(min_distinct, max_distinct_fraction ×
    the spans carrying it) distinct values in scope. With `log_errors`, a span with an attached
    error-level log (analyses/log_links.py) counts as an error even when its status is unset."""
    if selection.empty:
        raise ValueError("choose a selection: --errors, --origin-errors, --slower-than or --where")
    sel = compare_sql.selection(selection.errors, selection.origin_errors,
                                selection.slower_than_ns, selection.where, log_errors)
    n_sel, n_base = compare_sql.totals(store.con, scope, sel)
    skip, prefixes = selection.restated_keys()
    values: list[AttributeValue] = []
    high: list[HighCardinalityKey] = []
    rows = compare_sql.values(store.con, scope, sel, (n_sel, n_base), skip, prefixes, min_distinct,
                              max_distinct_fraction, limit) if n_sel else []
    for kind, src, key, val, cs, cb, ps, pb, d, lift, sc in rows:
        if kind == "value":
            values.append(AttributeValue(src, key, val, int(cs), int(cb), float(ps),
                                         None if pb is None else float(pb), float(d), float(lift),
                                         float(sc)))
        else:
            high.append(HighCardinalityKey(src, key, int(cs), int(cb)))
    restated = [*skip, *(f"{p}*" for p in prefixes)]
    propagated = (compare_sql.propagated_errors(store.con, scope, sel, log_errors)
                  if selection.errors and not selection.origin_errors and n_sel else 0)
    from_logs = (compare_sql.log_only_errors(store.con, scope, sel)
                 if log_errors and (selection.errors or selection.origin_errors) and n_sel else 0)
    return Comparison(selection, n_sel, n_base, values, high, restated, propagated, from_logs)
