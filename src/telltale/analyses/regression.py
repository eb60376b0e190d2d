"""Regression detection: per operation, did latency or the error rate change between two sides?

The sides are two time windows, a service's previous and latest versions, or two values of one
attribute (e.g. `deployment.environment`). Per operation (entry spans by default: server,
consumer and trace roots):

- latency: a two-sided Mann–Whitney U test (normal approximation with tie correction and
  continuity correction, as scipy's asymptotic method), the rank-biserial r (> 0: the current
  side is slower), exact p50/p95 of each side, and a bootstrap CI of the p95 shift;
- errors: a two-proportion z-test, or Fisher's exact test when an expected count is below 5.

All p-values are controlled together with Benjamini–Hochberg. A change is reported only if
q < alpha AND it is material (p95 ratio beyond 1.2×, |r| ≥ 0.2, or an error-rate change of at
least 2 points): with enough spans every difference is "significant", so size must matter too.
Ranked by min(-log10 q, 10) × effect: |r|·(1 + |log2 p95 ratio|) for latency, Cohen's h for errors.
p-values are carried as log10 so overwhelming evidence does not underflow to 0 and tie.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, regression_sql

Floats = npt.NDArray[np.float64]
SIG_CAP = 10.0  # beyond q = 1e-10 more evidence does not rank higher: the size of the change does


@dataclass(frozen=True)
class RankTest:
    """Mann–Whitney U of the current side `b` against the baseline `a`."""

    u: float  # pairs where b > a (ties count half)
    z: float
    log10_p: float
    r: float  # rank-biserial correlation 2U/(n_a n_b) - 1, in [-1, 1]

    @property
    def cles(self) -> float:
        """Common-language effect size: P(a current span is slower than a baseline one)."""
        return (self.r + 1) / 2


def log10_normal_two_sided(z: float) -> float:
    """log10 of the two-sided normal tail 2·sf(|z|) = erfc(|z|/√2), without underflow."""
    x = abs(z) / math.sqrt(2)
    if x < 25:
        return math.log10(math.erfc(x))
    # Asymptotic expansion of erfc; its relative error is below 1e-6 here.
    ln = -x * x - math.log(x * math.sqrt(math.pi)) + math.log1p(-1 / (2 * x * x) + 3 / (4 * x**4))
    return ln / math.log(10)


def mann_whitney(a: Floats, b: Floats) -> RankTest:
    n1, n2 = len(a), len(b)
    x = np.concatenate([a, b])
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # average rank of each tie group
    u = float(ranks[n1:].sum()) - n2 * (n2 + 1) / 2
    n = n1 + n2
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    mu = n1 * n2 / 2
    if sigma == 0:  # every value equal: nothing to tell apart
        return RankTest(u, 0.0, 0.0, 0.0)
    z = math.copysign(max(abs(u - mu) - 0.5, 0.0) / sigma, u - mu)
    return RankTest(u, z, log10_normal_two_sided(z), 2 * u / (n1 * n2) - 1)


class ErrorTest(StrEnum):
    Z = "z"  # two-proportion z-test
    FISHER = "fisher"  # Fisher's exact test


@dataclass(frozen=True)
class ProportionTest:
    method: ErrorTest
    log10_p: float


def fisher_log10_p(e_a: int, n_a: int, e_b: int, n_b: int) -> float:
    """Two-sided Fisher exact test of a 2×2 table, as log10 p (tables as likely or less)."""
    total, k = n_a + n_b, e_a + e_b
    lo, hi = max(0, k - n_b), min(k, n_a)
    x = np.arange(lo, hi + 1, dtype=np.float64)
    # log pmf of the hypergeometric by its ratio recurrence, anchored at the lowest x.
    step = (np.log((k - x[:-1]) * (n_a - x[:-1]))
            - np.log((x[:-1] + 1) * (total - k - n_a + x[:-1] + 1)))
    first = (_lchoose(k, lo) + _lchoose(total - k, n_a - lo) - _lchoose(total, n_a))
    logpmf = first + np.concatenate([[0.0], np.cumsum(step)])
    observed = logpmf[e_a - lo]
    tail = logpmf[logpmf <= observed + 1e-7]
    peak = float(tail.max())
    return min(0.0, (peak + math.log(float(np.exp(tail - peak).sum()))) / math.log(10))


def _lchoose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def proportion_test(e_a: int, n_a: int, e_b: int, n_b: int) -> ProportionTest:
    """Two-proportion z-test (pooled); Fisher's exact test when an expected count is below 5."""
    total, k = n_a + n_b, e_a + e_b
    expected = min(n_a, n_b) * min(k, total - k) / total
    if expected < 5:
        return ProportionTest(ErrorTest.FISHER, fisher_log10_p(e_a, n_a, e_b, n_b))
    pooled = k / total
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return ProportionTest(ErrorTest.Z, log10_normal_two_sided((e_b / n_b - e_a / n_a) / se))


def benjamini_hochberg_log10(log10_p: Floats) -> Floats:
    """BH q-values (as log10) of a family of p-values given as log10."""
    m = len(log10_p)
    if m == 0:
        return log10_p
    order = np.argsort(log10_p, kind="stable")
    scaled = log10_p[order] + np.log10(m / np.arange(1, m + 1))
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 0.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q


def bootstrap_quantile_shift(a: Floats, b: Floats, q: float = 0.95, resamples: int = 1_000,
                             seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of quantile(b) - quantile(a) for sorted samples a and b.

    Vectorised and exact: the j-th smallest of a resample (n draws with replacement from sorted
    x) is x[floor(n·U(j))], where U(j), the j-th smallest of n uniforms, is Beta(j, n+1-j). So a
    resample's linear-interpolated quantile needs two draws, not n, per resample."""
    rng = np.random.default_rng(seed)
    shift = _resampled_quantile(b, q, resamples, rng) - _resampled_quantile(a, q, resamples, rng)
    tail = (1 - level) / 2
    lo, hi = np.quantile(shift, [tail, 1 - tail])
    return float(lo), float(hi)


def _resampled_quantile(x: Floats, q: float, resamples: int, rng: np.random.Generator) -> Floats:
    n = len(x)
    h = (n - 1) * q
    k = math.floor(h)
    frac = h - k
    u1 = rng.beta(k + 1, n - k, resamples)  # the (k+1)-th smallest of n uniforms
    v1 = x[np.minimum((u1 * n).astype(np.int64), n - 1)]
    if frac == 0 or k + 1 >= n:
        return v1
    # Given U(k+1) = u, the next is the smallest of the n-k-1 uniforms above u.
    u2 = u1 + (1 - u1) * rng.beta(1, n - k - 1, resamples)
    v2 = x[np.minimum((u2 * n).astype(np.int64), n - 1)]
    out: Floats = v1 + frac * (v2 - v1)
    return out


# -- the analysis ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSplit:
    baseline: Scope
    current: Scope


@dataclass(frozen=True)
class VersionSplit:
    """Each service's latest `service.version` (by first appearance) against the one before."""

    scope: Scope


@dataclass(frozen=True)
class AttributeSplit:
    scope: Scope
    key: str
    baseline: str
    current: str


Split = WindowSplit | VersionSplit | AttributeSplit


def split_at(scope: Scope, at_ns: int) -> WindowSplit:
    """The scope's window cut in two at `at_ns`: before (baseline) vs from then on (current)."""
    if (scope.since is not None and at_ns <= scope.since) or (
            scope.until is not None and at_ns >= scope.until):
        raise ValueError("the split time must lie inside the window")
    return WindowSplit(scope.with_window(scope.since, at_ns), scope.with_window(at_ns, scope.until))


class Change(StrEnum):
    SLOWER = "slower"
    FASTER = "faster"
    MORE_ERRORS = "more errors"
    FEWER_ERRORS = "fewer errors"


@dataclass(frozen=True)
class Thresholds:
    alpha: float = 0.01  # on BH q-values
    p95_ratio: float = 1.2
    min_r: float = 0.2
    error_delta: float = 0.02  # absolute change in error rate
    min_samples: int = 30  # per side; fewer: "insufficient data", not tested


@dataclass(frozen=True)
class OperationChange:
    service: str
    operation: str
    labels: tuple[str, str]  # what the baseline and current sides are (versions, values)
    n: tuple[int, int]
    errors: tuple[int, int]
    p50_ns: tuple[float | None, float | None]
    p95_ns: tuple[float | None, float | None]
    latency: RankTest | None = None  # None: insufficient data, not tested
    latency_log10_q: float | None = None
    p95_shift_ci_ns: tuple[float, float] | None = None
    sampled: bool = False
    error_test: ProportionTest | None = None
    errors_log10_q: float | None = None
    changes: tuple[Change, ...] = ()
    score: float | None = None

    @property
    def tested(self) -> bool:
        return self.latency is not None

    @property
    def error_rates(self) -> tuple[float | None, float | None]:
        return (self.errors[0] / self.n[0] if self.n[0] else None,
                self.errors[1] / self.n[1] if self.n[1] else None)

    @property
    def p95_ratio(self) -> float | None:
        a, b = self.p95_ns
        return b / a if a and b is not None else None


@dataclass(frozen=True)
class RegressionReport:
    comparison: str
    thresholds: Thresholds
    operations: list[OperationChange]  # ranked: significant first, by score
    notes: list[str]

    @property
    def significant(self) -> list[OperationChange]:
        return [o for o in self.operations if o.changes]

    def to_rows(self, significant_only: bool = False) -> Rows:
        return _rows(self, self.significant if significant_only else self.operations)


def regressions(store: Store, split: Split, *, entry_only: bool = True,
                thresholds: Thresholds | None = None, cap: int = 20_000, resamples: int = 1_000,
                seed: int = 0) -> RegressionReport:
    th = thresholds or Thresholds()
    sides, labels, comparison, notes = _sides(store, split)
    stats: dict[tuple[str, str], dict[int, tuple[int, int, float | None, float | None]]] = {}
    if sides is not None:
        for svc, op, side, n, errors, p50, p95 in regression_sql.summary(store.con, sides, entry_only):
            stats.setdefault((svc, op), {})[int(side)] = (int(n), int(errors), float(p50), float(p95))
    eligible = [k for k, v in stats.items()
                if min(v.get(0, (0,))[0], v.get(1, (0,))[0]) >= max(th.min_samples, 2)]
    samples = regression_sql.samples(store.con, sides, entry_only, cap) if sides and eligible else {}

    # Every test first, then one Benjamini–Hochberg over all of them.
    tests = []
    for key in eligible:
        a, b = samples[(*key, 0)], samples[(*key, 1)]
        (n_a, e_a, *_), (n_b, e_b, *_) = stats[key][0], stats[key][1]
        tests.append((mann_whitney(a, b), proportion_test(e_a, n_a, e_b, n_b),
                      bootstrap_quantile_shift(a, b, 0.95, resamples,
                                               seed ^ zlib.crc32("\0".join(key).encode()))))
    q = benjamini_hochberg_log10(np.array([t[0].log10_p for t in tests] + [t[1].log10_p for t in tests]))
    judged = {key: (rank, float(q[i]), ci, prop, float(q[len(tests) + i]))
              for i, (key, (rank, prop, ci)) in enumerate(zip(eligible, tests, strict=True))}
    changes = []
    for (svc, op), by_side in stats.items():
        sa, sb = by_side.get(0, (0, 0, None, None)), by_side.get(1, (0, 0, None, None))
        change = OperationChange(svc, op, labels.get(svc, ("baseline", "current")), (sa[0], sb[0]),
                                 (sa[1], sb[1]), (sa[2], sb[2]), (sa[3], sb[3]))
        if (svc, op) in judged:
            change = _judged(change, *judged[(svc, op)], th, sampled=max(change.n) > cap)
        changes.append(change)
    changes.sort(key=lambda c: (not c.changes, not c.tested, -(c.score or 0.0), c.service, c.operation))
    if insufficient := sum(not c.tested for c in changes):
        notes.append(f"{insufficient} operation(s) had fewer than {th.min_samples} spans on a side: "
                     "insufficient data, not tested.")
    if any(c.sampled for c in changes):
        notes.append(f"Durations were sampled (at most {cap:,} spans per side, chosen by span id "
                     "hash) for the rank test and bootstrap; p50/p95 are exact.")
    notes.append(f"Significant: q < {th.alpha} (Benjamini–Hochberg over {len(q)} tests) and "
                 f"p95 ratio ≥ {th.p95_ratio} or |r| ≥ {th.min_r} (latency), or an error-rate "
                 f"change ≥ {th.error_delta * 100:g} points. Ranked by min(−log10 q, {SIG_CAP:g}) × effect.")
    return RegressionReport(comparison, th, changes, notes)


def _judged(c: OperationChange, rank: RankTest, lat_q: float, ci: tuple[float, float],
            prop: ProportionTest, err_q: float, th: Thresholds, sampled: bool) -> OperationChange:
    ratio = c.p95_ratio or 1.0
    found: list[Change] = []
    material = abs(rank.r) >= th.min_r or max(ratio, 1 / ratio) >= th.p95_ratio
    if lat_q < math.log10(th.alpha) and material:
        slower = rank.r > 0 if abs(rank.r) >= th.min_r else ratio > 1
        found.append(Change.SLOWER if slower else Change.FASTER)
    rate_a, rate_b = c.error_rates
    delta = (rate_b or 0.0) - (rate_a or 0.0)
    if err_q < math.log10(th.alpha) and abs(delta) >= th.error_delta:
        found.append(Change.MORE_ERRORS if delta > 0 else Change.FEWER_ERRORS)
    lat_effect = abs(rank.r) * (1 + abs(math.log2(ratio)))
    h = abs(2 * math.asin(math.sqrt(rate_b or 0.0)) - 2 * math.asin(math.sqrt(rate_a or 0.0)))
    score = max(0.0, min(-lat_q, SIG_CAP) * lat_effect, min(-err_q, SIG_CAP) * h)
    return replace(c, latency=rank, latency_log10_q=lat_q, p95_shift_ci_ns=ci, sampled=sampled,
                   error_test=prop, errors_log10_q=err_q, changes=tuple(found), score=score)


def _sides(store: Store, split: Split) -> tuple[regression_sql.Sides | None, dict[str, tuple[str, str]],
                                                str, list[str]]:
    """The bound side condition, per-service side labels, a description, and notes."""
    if isinstance(split, WindowSplit):
        a, b = split.baseline, split.current
        if ((a.since is None or b.until is None or a.since < b.until)
                and (b.since is None or a.until is None or b.since < a.until)):
            raise ValueError("the baseline and current windows overlap")
        return (regression_sql.window_sides(a, b), {},
                f"window {_window(a)} (baseline) vs {_window(b)} (current)", [])
    if isinstance(split, AttributeSplit):
        return (regression_sql.attribute_sides(split.scope, split.key, split.baseline, split.current),
                {}, f"{split.key} = {split.baseline!r} (baseline) vs {split.current!r} (current)", [])
    seen: dict[str, list[str]] = {}
    for svc, version, _first, _n in regression_sql.versions(store.con, split.scope):
        seen.setdefault(svc, []).append(version)
    pairs = {svc: (v[-2], v[-1]) for svc, v in seen.items() if len(v) >= 2}
    notes = [f"{svc}: {old} → {new} (latest two versions by first appearance)"
             for svc, (old, new) in sorted(pairs.items())]
    if not pairs:
        notes.append("No service has two service.version values in the window.")
        return None, {}, "latest vs previous service.version", notes
    svcs = sorted(pairs)
    sides = regression_sql.version_sides(split.scope, svcs, [pairs[s][0] for s in svcs],
                                         [pairs[s][1] for s in svcs])
    return sides, pairs, "latest vs previous service.version", notes


def _window(s: Scope) -> str:
    def iso(ns: int | None) -> str:
        return "…" if ns is None else np.datetime_as_string(np.datetime64(ns, "ns"), "s") + "Z"
    return f"[{iso(s.since)}, {iso(s.until)})"


def _ms(ns: float | None, scale: float = 1e-6) -> float | None:
    return None if ns is None else ns * scale


def _rows(report: RegressionReport, operations: list[OperationChange]) -> Rows:
    labelled = any(o.labels != ("baseline", "current") for o in operations)
    # The table keeps to the headline figures; JSON rows also carry p50s, the p95 shift and its
    # bootstrap CI, the CLES, the error test used and the score.
    columns = ["rank", "service", "operation", "change", *(["baseline", "current"] if labelled else []),
               "n_base", "n_cur", "p95_base_ms", "p95_cur_ms", "p95_ratio", "r", "latency_q",
               "err_base_pct", "err_cur_pct", "errors_q"]
    rows = []
    for i, o in enumerate(operations, 1):
        rate_a, rate_b = o.error_rates
        rows.append({
            "rank": i, "service": o.service, "operation": o.operation,
            "change": ", ".join(o.changes) or ("no change" if o.tested else "insufficient data"),
            "baseline": o.labels[0], "current": o.labels[1], "n_base": o.n[0], "n_cur": o.n[1],
            "p50_base_ms": _ms(o.p50_ns[0]), "p50_cur_ms": _ms(o.p50_ns[1]),
            "p95_base_ms": _ms(o.p95_ns[0]), "p95_cur_ms": _ms(o.p95_ns[1]),
            "p95_ratio": o.p95_ratio,
            "p95_shift_ms": None if None in o.p95_ns else _ms(o.p95_ns[1]) - _ms(o.p95_ns[0]),  # type: ignore[operator]
            "p95_shift_ci_ms": [c / 1e6 for c in o.p95_shift_ci_ns] if o.p95_shift_ci_ns else None,
            "r": o.latency.r if o.latency else None,
            "cles": o.latency.cles if o.latency else None,
            "latency_q": None if o.latency_log10_q is None else 10**o.latency_log10_q,
            "latency_log10_q": o.latency_log10_q,
            "err_base_pct": _ms(rate_a, 100), "err_cur_pct": _ms(rate_b, 100),
            "errors_test": o.error_test.method if o.error_test else None,
            "errors_q": None if o.errors_log10_q is None else 10**o.errors_log10_q,
            "errors_log10_q": o.errors_log10_q,
            "sampled": o.sampled, "score": o.score,
        })
    found = len(report.significant)
    title = f"Regressions: {report.comparison} — {found} significant change(s)"
    return Rows(title, columns, rows, list(report.notes),
                {"comparison": report.comparison, "significant": found,
                 "thresholds": vars(report.thresholds)})
