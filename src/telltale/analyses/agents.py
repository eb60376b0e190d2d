"""Agent analytics: how agents (and their LLM calls) fare per model × role, task and routing.

A unit is an agent span (it names a role, or is a GenAI `invoke_agent`) or an LLM call (a span
with a model and no role); see store/agents_sql.py for the attribute spellings read. `auto`
looks at agents when there are any, else at calls, so the two are not double counted (an
agent's tokens usually include its calls').

Rates come with a Wilson score interval (95 %). Ranking "worst" by the Wilson lower bound alone
would still put 2 failures in 2 (interval [0.34, 1]) above 300 in 1000 ([0.27, 0.33]): with no
prior, two failures prove a rate of at least a third. So `worst` ranks by a shrunk lower bound:
the 2.5 % quantile of the Beta posterior whose prior is the overall failure rate in scope,
worth `prior_weight` (default 10) spans. Large groups keep their own rate; a group of 2 is
pulled towards the average until it has the evidence to stand out.

Cost is tokens × a price table (USD per million tokens, input and output, per model); models
missing from it have no cost rather than a guessed one.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, agents_sql

Z95 = 1.959963984540054
NS_PER_MS = 1_000_000

# USD per million tokens (input, output): list prices when written; pass your own (--prices).
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-1": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
}


def load_prices(path: Path | None) -> dict[str, tuple[float, float]]:
    """The default table, updated from a TOML or JSON file: {model = {input = 3.0, output = 15.0}}
    (USD per million tokens)."""
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    text = path.read_text()
    raw: dict[str, Any] = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    for model, spec in raw.items():
        if not isinstance(spec, dict) or not {"input", "output"} <= spec.keys():
            raise ValueError(f"price of {model!r} must give input and output (USD per 1M tokens)")
        prices[str(model)] = (float(spec["input"]), float(spec["output"]))
    return prices


def wilson(failures: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (failures of n); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = failures / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class GroupStats:
    key: tuple[str, ...]
    n: int
    failures: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    tokens_in: int
    tokens_out: int
    tokens: int
    cost_usd: float | None  # None: some tokens are of a model missing from the price table
    error_classes: dict[str, int] = field(default_factory=dict)
    rank_bound: float | None = None  # worst(): the shrunk lower bound it ranks by

    @property
    def failure_rate(self) -> float:
        return self.failures / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.failures, self.n)


@dataclass(frozen=True)
class AgentReport:
    title: str
    by: tuple[str, ...]
    units: tuple[str, ...]
    groups: list[GroupStats]
    notes: list[str] = field(default_factory=list)
    ranked: bool = False

    def to_rows(self) -> Rows:
        columns = [*self.by, "n", "failures", "failure_rate", "ci95_low", "ci95_high",
                   "error_classes", "p50_ms", "p90_ms", "p99_ms", "tokens", "cost_usd",
                   *(["rank_bound"] if self.ranked else [])]
        rows = []
        for g in self.groups:
            lo, hi = g.interval
            rows.append({**dict(zip(self.by, g.key, strict=True)), "n": g.n,
                         "failures": g.failures, "failure_rate": round(g.failure_rate, 4),
                         "ci95_low": round(lo, 4), "ci95_high": round(hi, 4),
                         "error_classes": ", ".join(f"{k}:{v}" for k, v in g.error_classes.items()),
                         "p50_ms": round(g.p50_ms, 1), "p90_ms": round(g.p90_ms, 1),
                         "p99_ms": round(g.p99_ms, 1), "tokens": g.tokens,
                         "cost_usd": None if g.cost_usd is None else round(g.cost_usd, 4),
                         **({"rank_bound": round(g.rank_bound or 0.0, 4)} if self.ranked else {})})
        return Rows(self.title, columns, rows, self.notes, {"units": list(self.units)})


def choose_units(store: Store, scope: Scope, unit: str) -> tuple[str, ...]:
    """`agent`, `call`, `all`, or `auto`: agents when any are in scope, else calls."""
    if unit == "all":
        return agents_sql.UNITS
    if unit in agents_sql.UNITS:
        return (unit,)
    if unit != "auto":
        raise ValueError(f"unit must be auto, agent, call or all, not {unit!r}")
    counts = agents_sql.unit_counts(store.con, scope)
    return ("agent",) if counts.get("agent") else ("call",)


def _costs(rows: list[tuple[Any, ...]], width: int,
           prices: dict[str, tuple[float, float]]) -> tuple[dict[tuple[str, ...], float | None], set[str]]:
    costs: dict[tuple[str, ...], float | None] = {}
    unpriced: set[str] = set()
    for row in rows:
        key, model, t_in, t_out = tuple(row[:width]), row[width], row[width + 1], row[width + 2]
        if not t_in and not t_out:
            costs.setdefault(key, 0.0)
            continue
        price = prices.get(str(model)) if model is not None else None
        if price is None:
            unpriced.add(str(model))
            costs[key] = None
            continue
        before = costs.get(key, 0.0)
        costs[key] = None if before is None else before + ((t_in or 0) * price[0]
                                                           + (t_out or 0) * price[1]) / 1e6
    return costs, unpriced


def summarise(store: Store, scope: Scope, by: tuple[str, ...] = ("model", "role"), *,
              unit: str = "auto", prices: dict[str, tuple[float, float]] | None = None,
              title: str = "agents") -> AgentReport:
    """Per group: count, failures, rate with its interval, error classes, latency, tokens, cost."""
    units = choose_units(store, scope, unit)
    raw = agents_sql.stats(store.con, scope, by, units)
    width = len(by)
    classes: dict[tuple[str, ...], dict[str, int]] = {}
    for row in agents_sql.error_classes(store.con, scope, by, units):
        classes.setdefault(tuple(row[:width]), {})[str(row[width])] = int(row[width + 1])
    costs, unpriced = _costs(agents_sql.tokens_by_model(store.con, scope, by, units), width,
                             prices if prices is not None else DEFAULT_PRICES)
    groups = []
    for row in raw:
        key = tuple(str(v) for v in row[:width])
        n, failures, q, max_ns, t_in, t_out, tokens = row[width:]
        q = q or [0.0, 0.0, 0.0]
        groups.append(GroupStats(
            key, int(n), int(failures), q[0] / NS_PER_MS, q[1] / NS_PER_MS, q[2] / NS_PER_MS,
            (max_ns or 0) / NS_PER_MS, int(t_in or 0), int(t_out or 0), int(tokens or 0),
            costs.get(key, 0.0), dict(sorted(classes.get(key, {}).items()))))
    notes = [f"units: {' and '.join(units)} spans"]
    if unpriced:
        notes.append(f"no price for {', '.join(sorted(unpriced))}: cost left blank (--prices)")
    if not groups:
        notes.append("no agent spans or LLM calls in scope")
    return AgentReport(title, by, units, groups, notes)


def shrunk_lower_bound(failures: int, n: int, prior_rate: float, prior_weight: float) -> float:
    """2.5 % quantile of Beta(failures + w·p0, successes + w·(1 − p0)): the failure rate the
    group surely exceeds once its count is weighed against the overall rate p0."""
    # scipy.stats costs ~0.45 s to import: only when a ranking is computed, not per CLI start.
    from scipy.stats import beta  # type: ignore[import-untyped]  # scipy ships no stubs

    p0 = min(max(prior_rate, 1e-6), 1 - 1e-6)
    a = failures + prior_weight * p0
    b = n - failures + prior_weight * (1 - p0)
    return float(beta.ppf(0.025, a, b))


def worst(store: Store, scope: Scope, by: tuple[str, ...] = ("model", "role"), *,
          unit: str = "auto", min_count: int = 1, top: int | None = 10, prior_weight: float = 10.0,
          prices: dict[str, tuple[float, float]] | None = None) -> AgentReport:
    """Groups ranked by their shrunk lower bound (see the module docstring), then rate and n:
    the combinations that are surely bad, not the ones that are merely rare."""
    report = summarise(store, scope, by, unit=unit, prices=prices, title="worst agent combinations")
    total = sum(g.n for g in report.groups)
    p0 = sum(g.failures for g in report.groups) / total if total else 0.0
    bounded = [replace(g, rank_bound=shrunk_lower_bound(g.failures, g.n, p0, prior_weight))
               for g in report.groups if g.n >= min_count]
    ranked = sorted(bounded, key=lambda g: (-(g.rank_bound or 0.0), -g.failure_rate, -g.n, g.key))
    notes = [*report.notes, f"ranked by rank_bound: the 2.5 % quantile of the failure rate's "
                            f"Beta posterior, prior = overall rate {p0:.3f} worth {prior_weight:g} "
                            f"spans; ci95 = Wilson interval of the group's own counts"]
    return AgentReport(report.title, by, report.units, ranked[:top] if top else ranked, notes,
                       ranked=True)


@dataclass(frozen=True)
class TrendPoint:
    bucket_ns: int
    key: tuple[str, ...]
    n: int
    failures: int
    p50_ms: float
    tokens: int


@dataclass(frozen=True)
class AgentTrends:
    by: tuple[str, ...]
    bucket_ns: int
    points: list[TrendPoint]
    units: tuple[str, ...]

    def to_rows(self) -> Rows:
        rows = [{"bucket_start_ns": p.bucket_ns, **dict(zip(self.by, p.key, strict=True)), "n": p.n,
                 "failures": p.failures,
                 "failure_rate": round(p.failures / p.n, 4) if p.n else 0.0,
                 "p50_ms": round(p.p50_ms, 1), "tokens": p.tokens} for p in self.points]
        return Rows("agent trends", ["bucket_start_ns", *self.by, "n", "failures",
                                      "failure_rate", "p50_ms", "tokens"], rows,
                     [f"bucket: {self.bucket_ns // 1_000_000_000} s; units: "
                      f"{' and '.join(self.units)}"])


def trends(store: Store, scope: Scope, by: tuple[str, ...] = ("model",), *, bucket_s: int = 3600,
           unit: str = "auto") -> AgentTrends:
    if bucket_s <= 0:
        raise ValueError("the bucket must be a positive number of seconds")
    units = choose_units(store, scope, unit)
    bucket_ns = bucket_s * 1_000_000_000
    width = len(by)
    points = [TrendPoint(int(r[0]), tuple(str(v) for v in r[1:width + 1]), int(r[width + 1]),
                         int(r[width + 2]), (r[width + 3] or 0.0) / NS_PER_MS, int(r[width + 4] or 0))
              for r in agents_sql.trends(store.con, scope, by, units, bucket_ns)]
    return AgentTrends(by, bucket_ns, points, units)
