"""Weeks of CI history with planted patterns, as generic CI JSON lines (normalize/ci_jsonl.py).

Separate from sim/ci.py (the live stream beside the services' traces): this is the long history
CI analytics and predictions need. Two workflows: `ci` (lint, unit, integration, build) on main
and feature branches, and `docs` (build-docs, deploy-docs) on main. Planted, and reported in
`truth` as measured from the emitted records:
- a flaky job, `ci/integration`: each attempt fails with `flaky_p` whatever the commit, and a
  failed run is re-run (attempt 2) on the same commit;
- a slow-down trend: `ci/build` grows `slowdown_per_week` per week;
- a broken stretch: `docs/deploy-docs` fails `broken_runs` times in a row from day `broken_day`,
  and `docs/build-docs` takes 4x its usual time that day (rules: low success, k x mean, streak);
- with `signal`, `ci/unit` on feature branches fails more often the more files changed, and
  its duration grows with lines changed; without it both are independent of the change size
  (same average failure rate), so a prediction has nothing to learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from telltale.normalize import ci_jsonl
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded

DAY_S = 86_400
START_NS = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z, a Monday
FEATURES = ("feature/search", "feature/cart", "feature/login", "fix/rounding")
# workflow → jobs in order (job, [(step, median seconds)]); jobs of a run run in sequence.
WORKFLOWS: dict[str, list[tuple[str, list[tuple[str, float]]]]] = {
    "ci": [("lint", [("checkout", 5.0), ("ruff", 30.0)]),
           ("unit", [("checkout", 5.0), ("pytest", 180.0)]),
           ("integration", [("checkout", 5.0), ("compose-up", 40.0), ("tests", 240.0)]),
           ("build", [("checkout", 5.0), ("docker-build", 120.0)])],
    "docs": [("build-docs", [("checkout", 5.0), ("sphinx", 60.0)]),
             ("deploy-docs", [("upload", 20.0)])],
}


@dataclass(frozen=True)
class HistoryConfig:
    weeks: int = 8
    ci_runs_per_day: int = 24
    docs_runs_per_day: int = 4
    seed: int = 7
    signal: bool = True
    flaky_p: float = 0.25
    slowdown_per_week: float = 0.08
    broken_day: int = 40
    broken_runs: int = 5


@dataclass
class History:
    records: list[dict[str, Any]] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)

    def jsonl(self) -> bytes:
        return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in self.records)

    def decoded(self) -> Decoded:
        return ci_jsonl.decode(self.jsonl(), DecodeOptions(source="sim-ci-history"))


def _unit_fail_p(cfg: HistoryConfig, branch: str, files: int) -> float:
    if not cfg.signal:
        return 0.12  # about the signal variant's average, whatever the branch or change
    if branch == "main":
        return 0.02
    return 1 / (1 + math.exp(-(files - 18) / 2.5))  # ~0 for small changes, ~1 for big ones


class _Gen:
    def __init__(self, cfg: HistoryConfig) -> None:
        self.cfg, self.rng, self.out = cfg, np.random.default_rng(cfg.seed), History()
        self.run_no = 0
        self.outcomes: dict[tuple[str, str], list[bool]] = {}  # (job, sha) → passed?
        self.broken_left = cfg.broken_runs
        self.commit_draw: dict[str, float] = {}

    def run(self, workflow: str, t: float, branch: str, sha: str, files: int, lines: int,
            attempt: int, run_id: str) -> bool:
        rng, day = self.rng, int(t // DAY_S)
        created = t
        started = t + float(rng.exponential(20.0))
        base = {"system": "sim", "pipeline": workflow, "run_id": run_id, "attempt": attempt,
                "branch": branch, "revision": sha, "event": "push" if branch == "main"
                else "pull_request", "files_changed": files, "lines_changed": lines}
        clock, passed, job_records = started, True, []
        for job, steps in WORKFLOWS[workflow]:
            job_id = f"{run_id}-{attempt}-{job}"
            fail = self._fails(workflow, job, branch, sha, files, day)
            job_start, job_created = clock + float(rng.exponential(8.0)), clock
            step_t, step_records = job_start, []
            for n, (step, median) in enumerate(steps, start=1):
                dur = self._duration(workflow, job, step, median, day, lines)
                last = n == len(steps)
                step_records.append({**base, "ci": "step", "job": job, "job_id": job_id,
                                     "step": step, "step_number": n, "started": _iso(step_t),
                                     "finished": _iso(step_t + dur),
                                     "result": "failure" if fail and last else "success"})
                step_t += dur
            job_records.append({**base, "ci": "job", "job": job, "job_id": job_id,
                                "created": _iso(job_created), "started": _iso(job_start),
                                "finished": _iso(step_t), "result": "failure" if fail else "success"})
            job_records += step_records
            self.outcomes.setdefault((f"{workflow}/{job}", sha), []).append(not fail)
            clock = step_t
            if fail:
                passed = False
                break  # later jobs need this one: not run
        self.out.records.append({**base, "ci": "run", "created": _iso(created),
                                 "started": _iso(started), "finished": _iso(clock),
                                 "result": "success" if passed else "failure"})
        self.out.records += job_records
        return passed

    def _fails(self, workflow: str, job: str, branch: str, sha: str, files: int, day: int) -> bool:
        cfg, rng = self.cfg, self.rng
        if (workflow, job) == ("ci", "integration"):
            return bool(rng.random() < cfg.flaky_p)
        if (workflow, job) == ("ci", "unit"):  # a broken change stays broken on re-run
            draw = self.commit_draw.setdefault(sha, float(rng.random()))
            return draw < _unit_fail_p(cfg, branch, files)
        if (workflow, job) == ("docs", "deploy-docs") and day >= cfg.broken_day and self.broken_left:
            self.broken_left -= 1
            return True
        return bool(rng.random() < 0.005)

    def _duration(self, workflow: str, job: str, step: str, median: float, day: int,
                  lines: int) -> float:
        cfg, d = self.cfg, median * float(self.rng.lognormal(0.0, 0.12))
        if (workflow, job) == ("ci", "build"):
            d *= 1 + cfg.slowdown_per_week * day / 7
        if (workflow, job, step) == ("ci", "unit", "pytest") and cfg.signal:
            d *= 0.6 + lines / 400  # bigger changes run more tests
        if (workflow, job) == ("docs", "build-docs") and day == cfg.broken_day:
            d *= 4.0
        return d


def _iso(t: float) -> int:
    return START_NS + int(t * 1e9)  # epoch ns: ci_jsonl reads numbers by magnitude


def generate(cfg: HistoryConfig = HistoryConfig()) -> History:
    g, rng = _Gen(cfg), np.random.default_rng(cfg.seed + 1)
    events: list[tuple[float, str]] = []
    for day in range(cfg.weeks * 7):
        for workflow, n in (("ci", cfg.ci_runs_per_day), ("docs", cfg.docs_runs_per_day)):
            # Working hours mostly: a time of day drawn around 14:00 UTC.
            hours = np.clip(rng.normal(14.0, 3.0, n), 0.0, 23.9)
            events += [(day * DAY_S + float(h) * 3600, workflow) for h in hours]
    for t, workflow in sorted(events):
        g.run_no += 1
        branch = "main" if workflow == "docs" or rng.random() < 0.4 else str(rng.choice(FEATURES))
        sha = f"{g.run_no:08x}" + "0" * 32
        files = int(rng.integers(1, 30))
        lines = int(files * rng.integers(5, 40))
        run_id = str(1000 + g.run_no)
        if not g.run(workflow, t, branch, sha, files, lines, 1, run_id):
            g.run(workflow, t + 900, branch, sha, files, lines, 2, run_id)  # one re-run
    both = [k for k, v in g.outcomes.items() if k[0] == "ci/integration" and True in v
            and False in v]
    ran = [k for k in g.outcomes if k[0] == "ci/integration"]
    g.out.truth = {
        "flaky_job": "integration", "flaky_workflow": "ci",
        "flaky_commits": len(both), "integration_commits": len(ran),
        "flake_rate": len(both) / len(ran), "slow_job": "build",
        "slowdown_per_week": cfg.slowdown_per_week, "broken_job": "deploy-docs",
        "broken_day": cfg.broken_day, "broken_runs": cfg.broken_runs,
        "spike_job": "build-docs", "signal": cfg.signal, "runs": g.run_no,
    }
    return g.out
