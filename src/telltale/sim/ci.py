"""CI pipeline runs as spans of service `ci`: workflow run → jobs → steps.

`build-and-test` runs every couple of minutes on main and feature branches; one job is flaky
(its first attempt fails ~30 % of the time and the retry passes), another fails for real now and
then (the run fails and later jobs are skipped, so not emitted). A `deploy` run ships the new
checkout version and finishes at the deploy instant, tying CI to the latency regression.
Runs are few, so this module builds rows in Python and converts them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from telltale.model import SpanKind
from telltale.normalize.staging import ATTRS
from telltale.sim import columns as col
from telltale.sim.spans import Context, SpanChunk, plain_chunk

PIPELINE = "build-and-test"
RUN_EVERY_S = 100.0
REPO = "https://github.com/example/shop"
# (job, median seconds of its main step, probability of a genuine failure)
JOBS = (("lint", 40.0, 0.01), ("unit-tests", 170.0, 0.04),
        ("integration-tests", 290.0, 0.0), ("build-image", 110.0, 0.005))
DEPLOY_JOBS = (("build-image", 110.0, 0.0), ("deploy-production", 75.0, 0.0))
BRANCHES = ("main", "feature/search-ranking", "fix/cart-rounding", "feature/new-checkout")


@dataclass
class _Rows:
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    trace: list[int] = field(default_factory=list)  # run index; ids are allocated per run
    span: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)  # row index, -1 = root
    name: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    attrs: list[list[tuple[str, str]]] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)

    def add(self, start: int, end: int, run: int, parent: int, name: str, kind: SpanKind,
            attrs: dict[str, str], ok: bool) -> int:
        self.start.append(start)
        self.end.append(end)
        self.trace.append(run)
        self.parent.append(parent)
        self.name.append(name)
        self.kind.append(kind.value)
        self.attrs.append(sorted(attrs.items()))
        self.ok.append(ok)
        return len(self.start) - 1


@dataclass
class CiOutput:
    chunk: SpanChunk
    truth: dict[str, Any]


def generate(ctx: Context, rng: np.random.Generator) -> CiOutput:
    window_s = (ctx.end_ns - ctx.start_ns) / 1e9
    n_runs = max(1, int(rng.poisson(window_s / RUN_EVERY_S)))
    starts = np.sort(rng.integers(ctx.start_ns, ctx.end_ns, n_runs, dtype=np.int64))
    rows = _Rows()
    flaky = ctx.plan.flaky
    stats = {"runs": 0, "failed_runs": 0, "flaky_attempts": 0, "flaky_first_failures": 0,
             "flaky_retry_passes": 0}
    # The flaky job's first attempt fails in a fixed share of runs (not a coin per run), so
    # even a short window shows the configured rate.
    flaky_runs = set(rng.choice(n_runs, round(flaky.p_fail * n_runs), replace=False).tolist()
                     if flaky else ())
    for i, t in enumerate(starts):
        branch = BRANCHES[0] if rng.random() < 0.5 else BRANCHES[int(rng.integers(1, 4))]
        ok = _run(rows, i, int(t), PIPELINE, JOBS, branch, rng, flaky.job if flaky else None,
                  i in flaky_runs, stats)
        stats["runs"] += 1
        stats["failed_runs"] += not ok
    deploy_truth: dict[str, Any] = {}
    if ctx.plan.deploy is not None:
        d = ctx.plan.deploy
        # Lay the deploy run out from t=0, then shift it to end exactly at the deploy.
        run_index, first = n_runs, len(rows.start)
        _run(rows, run_index, 0, "deploy", DEPLOY_JOBS, "main", rng, None, False, {},
             {"deployment.version": d.new_version, "deployment.service": d.service})
        shift = d.at_ns - rows.end[first]
        for i in range(first, len(rows.start)):
            rows.start[i] += shift
            rows.end[i] += shift
        deploy_truth = {"run_id": str(9_000_000 + run_index), "start_ns": rows.start[first],
                        "end_ns": rows.end[first]}
        n_runs += 1
    return CiOutput(_chunk(rows, n_runs, ctx), {**stats, "deploy_run": deploy_truth})


def _run(rows: _Rows, index: int, t: int, pipeline: str,
         jobs: tuple[tuple[str, float, float], ...], branch: str, rng: np.random.Generator,
         flaky_job: str | None, flaky_fails: bool, stats: dict[str, int],
         extra: dict[str, str] | None = None) -> bool:
    """Lay out one run (root row first, then jobs and steps); returns whether it passed."""
    run_id = str(9_000_000 + index)
    root = rows.add(t, t, index, -1, pipeline, SpanKind.SERVER, {}, True)
    cursor = t + int(rng.uniform(2, 20) * 1e9)  # queued before a runner picks it up
    passed = True
    for task_id, (job, median_s, p_fail) in enumerate(jobs, start=1):
        attempts = 1
        if job == flaky_job:
            stats["flaky_attempts"] += 1
            if flaky_fails:
                stats["flaky_first_failures"] += 1
                attempts = 2
        for attempt in range(1, attempts + 1):
            fails = (attempt < attempts) or bool(rng.random() < p_fail)
            if attempt == 2:
                stats["flaky_retry_passes"] += not fails
            cursor = _job(rows, root, index, cursor, job, f"{run_id}{task_id}{attempt}", attempt,
                          median_s, fails, rng, pipeline)
            cursor += int(rng.uniform(1, 8) * 1e9)
        if fails:
            passed = False
            break
    rows.end[root] = cursor
    rows.ok[root] = passed
    rows.attrs[root] = sorted({
        "cicd.pipeline.name": pipeline, "cicd.pipeline.run.id": run_id,
        "cicd.pipeline.result": "success" if passed else "failure",
        "vcs.ref.head.name": branch, "vcs.repository.url.full": REPO,
        "vcs.ref.head.revision": rng.bytes(20).hex(),
        **(extra or {}),
    }.items())
    return passed


def _job(rows: _Rows, root: int, run: int, t: int, job: str, task_run_id: str, attempt: int,
         median_s: float, fails: bool, rng: np.random.Generator, pipeline: str) -> int:
    result = "failure" if fails else "success"
    job_row = rows.add(t, t, run, root, job, SpanKind.INTERNAL, {
        "cicd.pipeline.name": pipeline, "cicd.pipeline.task.name": job,
        "cicd.pipeline.task.run.id": task_run_id, "cicd.pipeline.task.run.result": result,
        "ci.job.attempt": str(attempt),
    }, not fails)
    cursor = t
    steps = (("Set up job", 3.0), ("Checkout", 5.0), (f"Run {job}", median_s), ("Post", 2.0))
    for step, median in steps:
        # A failing step stops the job early: its later steps are not run.
        length = int(rng.lognormal(np.log(median), 0.25) * 1e9)
        main = step.startswith("Run ")
        if main and fails:
            length = int(length * rng.uniform(0.3, 0.9))
        rows.add(cursor, cursor + length, run, job_row, step, SpanKind.INTERNAL, {
            "cicd.pipeline.task.name": job, "ci.step.name": step,
            "ci.step.result": "failure" if (main and fails) else "success",
        }, not (main and fails))
        cursor += length + int(rng.uniform(0.1, 1.0) * 1e9)
        if main and fails:
            break
    rows.end[job_row] = cursor
    return cursor


def _chunk(rows: _Rows, n_runs: int, ctx: Context) -> SpanChunk:
    n = len(rows.start)
    thi, tlo = ctx.trace_ids.take(n_runs)
    ids = ctx.span_ids.take(n)
    parent = np.array(rows.parent, dtype=np.int64)
    trace = np.array(rows.trace, dtype=np.int64)
    ok = np.array(rows.ok)
    message = col.where(parent < 0, "workflow run failed", "job failed: exit code 1", n)
    return plain_chunk(
        np.array(rows.start, dtype=np.int64), np.array(rows.end, dtype=np.int64), thi[trace],
        tlo[trace], ids, np.where(parent >= 0, ids[np.maximum(parent, 0)], np.uint64(0)),
        np.full(n, ctx.resources.of_service("ci"), dtype=np.int64),
        pa.array(rows.name, pa.string()), pa.array(rows.kind, pa.string()),
        pa.array(rows.attrs, ATTRS), np.where(ok, 1, 2).astype(np.int8),
        col.where(ok, "", message, n))
