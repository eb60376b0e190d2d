"""Regression detection: the statistics on arrays with known answers, hand-built stores with
exact results, and the simulator's injected post-deploy regression (and its absence)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from conftest import MS, T0, S, jsonl, kv_list, sid, span, tid
from telltale.analyses.regression import (
    AttributeSplit,
    Change,
    RegressionReport,
    Thresholds,
    VersionSplit,
    WindowSplit,
    benjamini_hochberg_log10,
    bootstrap_quantile_shift,
    fisher_log10_p,
    log10_normal_two_sided,
    mann_whitney,
    proportion_test,
    regressions,
    split_at,
)
from telltale.analyses.scope import Scope
from telltale.cli import main
from telltale.ingest import ingest_bytes
from telltale.settings import ENV_DB
from telltale.sim import SimConfig, SimResult, simulate
from telltale.store import Store

# -- the statistics --------------------------------------------------------------------------


def test_mann_whitney_exact_small_cases() -> None:
    full = mann_whitney(np.array([1.0, 2, 3]), np.array([4.0, 5, 6]))
    assert (full.u, full.r, full.cles) == (9.0, 1.0, 1.0)
    reverse = mann_whitney(np.array([4.0, 5, 6]), np.array([1.0, 2, 3]))
    assert (reverse.u, reverse.r) == (0.0, -1.0)
    assert reverse.log10_p == pytest.approx(full.log10_p)
    # One tie between the sides counts half a pair.
    tied = mann_whitney(np.array([1.0, 2]), np.array([2.0, 3]))
    assert tied.u == 3.5
    same = mann_whitney(np.full(40, 7.0), np.full(40, 7.0))
    assert (same.r, same.log10_p) == (0.0, 0.0)


def test_mann_whitney_matches_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for shift in (0, 1, 3):
        a = rng.integers(0, 40, 300).astype(np.float64)  # many ties
        b = rng.integers(0, 40, 250).astype(np.float64) + shift
        ours = mann_whitney(a, b)
        ref = stats.mannwhitneyu(b, a, alternative="two-sided", method="asymptotic")
        assert ours.u == pytest.approx(ref.statistic)
        assert ours.log10_p == pytest.approx(math.log10(ref.pvalue), rel=1e-9, abs=1e-12)


def test_normal_tail_does_not_underflow() -> None:
    special = pytest.importorskip("scipy.special")
    for z in (0.0, 1.96, 10.0, 35.0, 40.0, 80.0):
        expected = (math.log(2) + special.log_ndtr(-z)) / math.log(10)
        assert log10_normal_two_sided(z) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert log10_normal_two_sided(80.0) < -1000  # far below the smallest double


def test_proportion_tests() -> None:
    # z-test by hand: 10/100 vs 30/100, pooled 0.2, se = sqrt(.2 × .8 × .02).
    z = 0.2 / math.sqrt(0.2 * 0.8 * 0.02)
    result = proportion_test(10, 100, 30, 100)
    assert result.method == "z"
    assert result.log10_p == pytest.approx(math.log10(math.erfc(z / math.sqrt(2))))
    # Few errors: Fisher's exact. 0/40 vs 4/40: p = 2 × C(40,4)/C(80,4) (a symmetric table).
    fisher = proportion_test(0, 40, 4, 40)
    assert fisher.method == "fisher"
    assert 10 ** fisher.log10_p == pytest.approx(2 * math.comb(40, 4) / math.comb(80, 4))


def test_fisher_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for e_a, n_a, e_b, n_b in [(1, 300, 9, 500), (0, 50, 0, 60), (3, 30, 0, 31), (20, 400, 7, 90)]:
        ref = stats.fisher_exact([[e_a, n_a - e_a], [e_b, n_b - e_b]]).pvalue
        assert 10 ** fisher_log10_p(e_a, n_a, e_b, n_b) == pytest.approx(ref, rel=1e-7)


def test_benjamini_hochberg() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5, 0.001])
    # Sorted: .001 .01 .03 .04 .5 → × 5/rank: .005 .025 .05 .05 .5 (monotone from the top).
    expected = {0.001: 0.005, 0.01: 0.025, 0.03: 0.05, 0.04: 0.05, 0.5: 0.5}
    q = 10 ** benjamini_hochberg_log10(np.log10(p))
    assert q == pytest.approx([expected[x] for x in p])
    stats = pytest.importorskip("scipy.stats")
    rand = np.random.default_rng(1).uniform(0, 1, 200) ** 3
    assert 10 ** benjamini_hochberg_log10(np.log10(rand)) == pytest.approx(
        stats.false_discovery_control(rand))


def test_bootstrap_shift_ci_covers_a_known_shift() -> None:
    rng = np.random.default_rng(5)
    a = np.sort(rng.lognormal(np.log(80), 0.3, 2000))
    b = np.sort(a * 3)  # every span three times slower
    true_shift = float(np.quantile(b, 0.95) - np.quantile(a, 0.95))
    lo, hi = bootstrap_quantile_shift(a, b, seed=1)
    assert lo < true_shift < hi and lo > 0
    assert bootstrap_quantile_shift(a, b, seed=1) == (lo, hi)  # fixed seed, same answer
    same_lo, same_hi = bootstrap_quantile_shift(a, np.sort(rng.lognormal(np.log(80), 0.3, 2000)))
    assert same_lo < 0 < same_hi


def test_order_statistic_bootstrap_matches_resampling() -> None:
    """The two-draw bootstrap has the distribution of the brute-force one (resample n, p95)."""
    rng = np.random.default_rng(11)
    x = np.sort(rng.exponential(10.0, 150))
    brute = np.quantile(x[rng.integers(0, len(x), (20_000, len(x)))], 0.95, axis=1)
    zero = np.zeros(1)
    # The shift of b = x against a single-value a is x's resampled p95 itself.
    lo, hi = bootstrap_quantile_shift(zero, x, resamples=20_000, seed=2, level=0.9)
    assert lo == pytest.approx(np.quantile(brute, 0.05), rel=0.03)
    assert hi == pytest.approx(np.quantile(brute, 0.95), rel=0.03)


# -- a hand-built store with exact answers ---------------------------------------------------


def _request(service: str, env: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": kv_list({"service.name": service,
                                            "deployment.environment": env})},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}]}


@pytest.fixture
def envs(tmp_path: Path) -> Iterator[Store]:
    """api `GET /x`: 40 staging spans of 10.0-13.9 ms (none failed), 40 prod spans of 30.0-33.9
    ms (4 failed); `GET /rare`: 5 spans per side, too few to test."""
    requests = []
    for side, env, base, failed in ((0, "staging", 10 * MS, 0), (1, "prod", 30 * MS, 4)):
        spans = [span(tid(side * 100 + i + 1), sid(side * 100 + i + 1), "GET /x", kind=2,
                      start=T0 + i * 1000 * MS, end=T0 + i * 1000 * MS + base + i * MS // 10,
                      status=2 if i < failed else None) for i in range(40)]
        spans += [span(tid(side * 100 + 50 + i), sid(side * 100 + 50 + i), "GET /rare", kind=2,
                       start=T0 + i * MS, end=T0 + i * MS + base) for i in range(5)]
        requests.append(_request("api", env, spans))
    with Store(tmp_path / "e.duckdb") as store:
        ingest_bytes(store, jsonl(requests), source="envs.jsonl")
        yield store


def test_attribute_split_exact(envs: Store) -> None:
    report = regressions(envs, AttributeSplit(Scope(), "deployment.environment", "staging", "prod"))
    top, rare = report.operations
    assert (top.service, top.operation, top.n, top.errors) == ("api", "GET /x", (40, 40), (0, 4))
    staging = 10 + np.arange(40) / 10
    assert top.p50_ns[0] == pytest.approx(np.quantile(staging, 0.5) * MS)
    assert top.p95_ns[1] == pytest.approx(np.quantile(staging + 20, 0.95) * MS)
    assert top.latency is not None and top.latency.r == 1.0  # every prod span is slower
    # 0/40 vs 4/40 by Fisher (q: BH over 2 operations' 2 tests = this p × 2 / 2).
    assert top.error_test is not None and top.error_test.method == "fisher"
    assert 10 ** top.error_test.log10_p == pytest.approx(2 * math.comb(40, 4) / math.comb(80, 4))
    assert Change.SLOWER in top.changes
    assert Change.MORE_ERRORS not in top.changes  # p ≈ 0.12: not significant
    assert (rare.operation, rare.tested, rare.changes) == ("GET /rare", False, ())
    rows = report.to_rows().rows
    assert [r["change"] for r in rows] == ["slower", "insufficient data"]
    assert rows[0]["err_cur_pct"] == 10.0 and rows[0]["p95_ratio"] == pytest.approx(
        np.quantile(staging + 20, 0.95) / np.quantile(staging, 0.95))


def test_swapped_sides_report_faster(envs: Store) -> None:
    report = regressions(envs, AttributeSplit(Scope(), "deployment.environment", "prod", "staging"))
    assert report.operations[0].changes == (Change.FASTER,)


def test_min_samples_guard(envs: Store) -> None:
    report = regressions(envs, AttributeSplit(Scope(), "deployment.environment", "staging", "prod"),
                         thresholds=Thresholds(min_samples=41))
    assert not report.significant and not any(o.tested for o in report.operations)
    assert any("insufficient data" in n for n in report.notes)


def test_overlapping_windows_are_refused(envs: Store) -> None:
    with pytest.raises(ValueError, match="overlap"):
        regressions(envs, WindowSplit(Scope(T0, T0 + 10 * S), Scope(T0 + 5 * S, None)))
    with pytest.raises(ValueError, match="inside the window"):
        split_at(Scope(T0, T0 + 10 * S), T0 + 20 * S)


# -- the simulator ---------------------------------------------------------------------------


def _deploy(sim: SimResult) -> dict[str, Any]:
    return next(i for i in sim.truth["incidents"] if i["kind"] == "latency_regression")


def _assert_checkout_regression(report: RegressionReport, sim: SimResult) -> None:
    truth = _deploy(sim)
    top = report.operations[0]
    assert (top.service, top.operation) == (truth["service"], "POST /checkout")
    assert Change.SLOWER in top.changes
    assert top.p95_ratio == pytest.approx(truth["factor"], rel=0.15)
    measured = truth["measured"]
    assert top.p50_ns[1] / top.p50_ns[0] == pytest.approx(  # type: ignore[operator]
        measured["median_ns_after"] / measured["median_ns_before"], rel=0.01)
    assert top.n == (measured["server_spans_before"], measured["server_spans_after"])
    assert top.p95_shift_ci_ns is not None and top.p95_shift_ci_ns[0] > 0
    assert top.latency is not None and top.latency.r > 0.9


def test_split_at_the_deploy_finds_checkout_first(sim_store: Store, sim: SimResult) -> None:
    window = sim.truth["window"]
    report = regressions(sim_store, split_at(Scope(window["start_ns"], window["end_ns"]),
                                             _deploy(sim)["start_ns"]))
    _assert_checkout_regression(report, sim)
    # Its callers slow down by the same time, a smaller factor: ranked below it.
    callers = {(o.service, o.operation) for o in report.significant[1:3]}
    assert callers == {("gateway", "POST /api/checkout"), ("frontend", "POST /checkout")}


def test_by_version_compares_the_deployed_versions(sim_store: Store, sim: SimResult) -> None:
    report = regressions(sim_store, VersionSplit(Scope()))
    _assert_checkout_regression(report, sim)
    versions = _deploy(sim)["attributes"]["service.version"]
    assert report.operations[0].labels == (versions["before"], versions["after"])
    assert {o.service for o in report.operations} == {"checkout"}  # the only service deployed


def test_sampled_durations_still_find_it(sim_store: Store, sim: SimResult) -> None:
    report = regressions(sim_store, VersionSplit(Scope()), cap=100)
    _assert_checkout_regression(report, sim)
    assert report.operations[0].sampled
    assert any("sampled" in n for n in report.notes)


def test_two_windows_before_the_deploy_show_nothing(sim_store: Store, sim: SimResult) -> None:
    start, deploy = sim.truth["window"]["start_ns"], _deploy(sim)["start_ns"]
    report = regressions(sim_store, split_at(Scope(start, deploy), (start + deploy) // 2))
    assert sum(o.tested for o in report.operations) >= 15
    assert report.significant == []


def test_clean_run_shows_nothing(tmp_path: Path) -> None:
    clean = simulate(SimConfig(duration_s=300, incidents=False))
    with Store(tmp_path / "clean.duckdb") as store:
        store.commit(clean.decoded(), source="sim", fmt="simulator", content_hash="clean")
        window = clean.truth["window"]
        report = regressions(store, split_at(Scope(window["start_ns"], window["end_ns"]),
                                             (window["start_ns"] + window["end_ns"]) // 2))
    assert sum(o.tested for o in report.operations) >= 15
    assert report.significant == []


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", ENV_DB: None})


def test_cli_by_version_json(runner: CliRunner, sim_db: Path, sim: SimResult) -> None:
    res = runner.invoke(main, ["--db", str(sim_db), "regressions", "--by-version", "checkout",
                               "--format", "json", "--significant"])
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.output)
    assert out["significant"] == len(out["rows"]) >= 1
    top = out["rows"][0]
    assert (top["service"], top["operation"], top["baseline"], top["current"]) == (
        "checkout", "POST /checkout", "1.4.2", "1.5.0")
    assert top["change"].startswith("slower") and top["latency_q"] < 0.01


def test_cli_split_at_table(runner: CliRunner, sim_db: Path, sim: SimResult) -> None:
    at = str(_deploy(sim)["start_ns"])
    res = runner.invoke(main, ["--db", str(sim_db), "regressions", "--split-at", at])
    assert res.exit_code == 0, res.output
    first = next(line for line in res.output.splitlines() if "│    1 │" in line)
    assert "checkout" in first and "POST /checkout" in first and "slower" in first


def test_cli_needs_one_comparison(runner: CliRunner, sim_db: Path) -> None:
    res = runner.invoke(main, ["--db", str(sim_db), "regressions"])
    assert res.exit_code == 2 and "choose one comparison" in res.output
    res = runner.invoke(main, ["--db", str(sim_db), "regressions", "--attr", "deployment.environment"])
    assert res.exit_code == 2 and "--a" in res.output
