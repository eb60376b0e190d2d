"""SQL for CI analytics over CI/CD-convention spans (runs, jobs, steps) in `otel_traces`.

Every query starts from `_BASE`: one row per CI span with its level (run / job / step), names,
result and times. A span imported twice (a webhook and a REST export of the same run) is the
same (trace, span) pair and counted once, keeping its longest copy (the finished one).
Unfinished work (no result yet) is left out of everything.
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.store.scope_sql import span_filter

_BASE = """
WITH base AS (
  SELECT TraceId AS trace, SpanId AS span, Timestamp AS ts, Duration / 1e9 AS dur_s,
    CASE WHEN SpanAttributes['ci.step.name'] IS NOT NULL THEN 'step'
         WHEN SpanAttributes['cicd.pipeline.task.name'] IS NOT NULL THEN 'job' ELSE 'run' END
      AS level,
    SpanAttributes['cicd.pipeline.name'] AS workflow,
    coalesce(SpanAttributes['cicd.pipeline.task.name'], '') AS job,
    coalesce(SpanAttributes['ci.step.name'], '') AS step,
    nullif(coalesce(SpanAttributes['cicd.pipeline.task.run.result'],
                    SpanAttributes['cicd.pipeline.result']), '') AS result,
    -- jobs and steps that do not repeat the run's branch and commit inherit them
    coalesce(SpanAttributes['vcs.ref.head.name'],
             max(SpanAttributes['vcs.ref.head.name']) OVER (PARTITION BY TraceId), '') AS branch,
    coalesce(SpanAttributes['vcs.ref.head.revision'],
             max(SpanAttributes['vcs.ref.head.revision']) OVER (PARTITION BY TraceId), '') AS sha,
    coalesce(SpanAttributes['ci.event'], '') AS event,
    coalesce(SpanAttributes['cicd.pipeline.run.id'], TraceId) AS run_id,
    TRY_CAST(SpanAttributes['ci.run.attempt'] AS INTEGER) AS attempt,
    TRY_CAST(SpanAttributes['ci.queue_time_s'] AS DOUBLE) AS queue_s,
    TRY_CAST(SpanAttributes['ci.files_changed'] AS DOUBLE) AS files,
    TRY_CAST(SpanAttributes['ci.lines_changed'] AS DOUBLE) AS lines
  FROM otel_traces
  WHERE SpanAttributes['cicd.pipeline.name'] IS NOT NULL AND {where}
  QUALIFY row_number() OVER (PARTITION BY TraceId, SpanId ORDER BY Duration DESC) = 1
), done AS (SELECT * FROM base WHERE result IS NOT NULL AND result <> 'skip')
"""


def _run(con: Any, scope: Scope, body: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    where, scope_params = span_filter(scope)
    rows: list[tuple[Any, ...]] = con.execute(_BASE.format(where=where) + body,
                                              {**scope_params, **params}).fetchall()
    return rows


_STATS = """
SELECT level, workflow, job, step, count(*) AS n, avg((result = 'success')::INT) AS success_rate,
  quantile_cont(dur_s, 0.5), quantile_cont(dur_s, 0.9), quantile_cont(dur_s, 0.95), max(dur_s),
  avg(queue_s)
FROM done WHERE list_contains($levels, level)
GROUP BY ALL ORDER BY workflow, job, step
"""


def stats(con: Any, scope: Scope, levels: list[str]) -> list[tuple[Any, ...]]:
    """(level, workflow, job, step, n, success rate, p50 s, p90 s, p95 s, max s, mean queue s)."""
    return _run(con, scope, _STATS, {"levels": levels})


_PERIODS = """
, per AS (
  SELECT time_bucket(to_microseconds($width), make_timestamp(ts // 1000)) AS period, workflow,
    job, count(*) AS n, avg((result = 'success')::INT) AS success_rate,
    quantile_cont(dur_s, 0.5) AS p50, quantile_cont(dur_s, 0.95) AS p95,
    avg(queue_s) AS queue_s, avg(dur_s) AS run_s
  FROM done WHERE level = $level GROUP BY ALL
)
SELECT period, workflow, job, n, success_rate, p50, p95, queue_s, run_s,
  p50 / nullif(lag(p50) OVER (PARTITION BY workflow, job ORDER BY period), 0) - 1
FROM per ORDER BY workflow, job, period
"""


def periods(con: Any, scope: Scope, width_us: int, level: str) -> list[tuple[Any, ...]]:
    """Per period, workflow and job ('' for runs): (period, workflow, job, runs, success rate,
    p50 s, p95 s, mean queue s, mean run s, change of p50 vs the previous period)."""
    return _run(con, scope, _PERIODS, {"width": width_us, "level": level})


_FLAKY = """
, per_commit AS (
  SELECT workflow, job, sha, bool_or(result = 'success') AS ok, bool_or(result = 'failure') AS bad,
    count(*) AS n, sum((result = 'failure')::INT) AS fails
  FROM done WHERE level = 'job' AND sha <> '' AND result IN ('success', 'failure') GROUP BY ALL
)
SELECT workflow, job, count(*) AS commits, sum((ok AND bad)::INT) AS flaky_commits,
  sum((ok AND bad)::INT) / count(*) AS flake_rate, sum(n) AS runs,
  sum(CASE WHEN ok AND bad THEN fails ELSE 0 END) AS flaky_failures
FROM per_commit GROUP BY ALL HAVING sum((ok AND bad)::INT) >= $min_commits
ORDER BY flake_rate DESC, workflow, job
"""


def flaky(con: Any, scope: Scope, min_commits: int) -> list[tuple[Any, ...]]:
    """(workflow, job, commits, flaky commits, flake rate, runs, failures on flaky commits)."""
    return _run(con, scope, _FLAKY, {"min_commits": min_commits})


_LOW_SUCCESS = """
SELECT time_bucket(to_microseconds($width), make_timestamp(ts // 1000)) AS period, workflow, job,
  count(*) AS n, avg((result = 'success')::INT) AS rate
FROM done WHERE level = 'job' AND ($branch = '' OR branch = $branch)
GROUP BY ALL HAVING count(*) >= $min_runs AND avg((result = 'success')::INT) < $threshold
ORDER BY period, workflow, job
"""

_SLOW = """
, w AS (
  SELECT ts, workflow, job, run_id, dur_s,
    avg(dur_s) OVER prior AS mean_s, count(*) OVER prior AS k
  FROM done WHERE level = 'job' AND ($branch = '' OR branch = $branch)
  WINDOW prior AS (PARTITION BY workflow, job ORDER BY ts, span
                   ROWS BETWEEN $n PRECEDING AND 1 PRECEDING)
)
SELECT ts, workflow, job, run_id, dur_s, mean_s FROM w
WHERE k >= $n AND dur_s > $k * mean_s ORDER BY ts, workflow, job
"""

_STREAKS = """
, seq AS (
  SELECT ts, workflow, job, run_id, result = 'success' AS ok,
    row_number() OVER (PARTITION BY workflow, job ORDER BY ts, span)
    - row_number() OVER (PARTITION BY workflow, job, result = 'success' ORDER BY ts, span) AS grp
  FROM done WHERE level = 'job' AND ($branch = '' OR branch = $branch)
)
SELECT workflow, job, min(ts), max(ts), count(*) AS n, arg_min(run_id, ts), arg_max(run_id, ts)
FROM seq WHERE NOT ok GROUP BY workflow, job, grp HAVING count(*) >= $n
ORDER BY min(ts), workflow, job
"""


def low_success(con: Any, scope: Scope, width_us: int, threshold: float, min_runs: int,
                branch: str) -> list[tuple[Any, ...]]:
    """(period, workflow, job, runs, success rate) where the rate is below the threshold."""
    return _run(con, scope, _LOW_SUCCESS, {"width": width_us, "threshold": threshold,
                                           "min_runs": min_runs, "branch": branch})


def slow_jobs(con: Any, scope: Scope, k: float, n: int, branch: str) -> list[tuple[Any, ...]]:
    """(ts, workflow, job, run id, duration s, rolling mean s of the n runs before)."""
    return _run(con, scope, _SLOW, {"k": k, "n": n, "branch": branch})


def failure_streaks(con: Any, scope: Scope, n: int, branch: str) -> list[tuple[Any, ...]]:
    """(workflow, job, first ts, last ts, length, first run id, last run id) of ≥ n failures."""
    return _run(con, scope, _STREAKS, {"n": n, "branch": branch})


_RUN_TRACE = """
SELECT trace FROM done WHERE level = 'run' AND ($workflow = '' OR workflow = $workflow)
  AND ($run_id = '' OR run_id = $run_id)
ORDER BY CASE WHEN $run_id = '' THEN dur_s ELSE attempt END DESC, ts DESC, trace LIMIT 1
"""


def run_trace(con: Any, scope: Scope, workflow: str, run_id: str) -> str | None:
    """The trace of a run: the given run id's latest attempt, else the slowest run."""
    rows = _run(con, scope, _RUN_TRACE, {"workflow": workflow, "run_id": run_id})
    return str(rows[0][0]) if rows else None


_RUNS = """
SELECT ts, workflow, branch, event, coalesce(attempt, 1), dur_s, result <> 'success',
  files, lines, queue_s, ts + CAST(dur_s * 1e9 AS BIGINT)
FROM done WHERE level = 'run' ORDER BY ts, trace
"""


def runs(con: Any, scope: Scope) -> list[tuple[Any, ...]]:
    """Finished runs in time order: (start ns, workflow, branch, event, attempt, duration s,
    failed, files changed, lines changed, queue s, end ns) — the predictions' history."""
    return _run(con, scope, _RUNS, {})
