"""The agent orchestrator: runs that spawn workers (model × caste × routing source).

Each run is a trace: `orchestrate <task>` → one `spawn <caste>` span per worker → its LLM
`chat <model>` calls. The orchestrator traces its runs with OpenTelemetry but logs its workers
as JSON lines, so the two sources complement each other: the `orchestrate` roots and `chat`
calls are OTLP spans, while each worker exists only as JSON-lines agent events (`spawn`, then
`complete`) carrying the worker span's `trace_id`, `span_id` and `parent_id` (the run's root).
Ingesting both files gives whole traces; the spawn spans are also staged on their own
(`AgentOutput.spawns`) for committing straight into the store. Success depends on model, caste
and routing source (fallback routing is worse), so analyses have real differences to find. The
stuck worker is spawned and never completes: a `spawn` event without its `complete` (an open
span once ingested) and no staged span (spans export when they end); its run times out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from telltale.model import SpanKind
from telltale.sim import columns as col
from telltale.sim.ids import I64, U64, Bools, span_id_strings, trace_id_strings
from telltale.sim.spans import Context, SpanChunk, plain_chunk

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1-mini")
PROVIDER = ("anthropic", "anthropic", "openai")
MODEL_WEIGHTS = (0.45, 0.35, 0.20)
MODEL_SUCCESS = (0.94, 0.86, 0.89)
MODEL_MEDIAN_S = (24.0, 7.0, 12.0)
CASTES = ("planner", "scout", "worker", "reviewer")
CASTE_WEIGHTS = (0.15, 0.25, 0.45, 0.15)
CASTE_SUCCESS = (0.0, -0.04, -0.02, 0.03)
CASTE_DURATION = (1.0, 0.6, 1.6, 0.8)
CASTE_TOKENS = (3000, 1500, 6000, 4000)
SOURCES = ("rule", "llm", "fallback")
SOURCE_WEIGHTS = (0.6, 0.3, 0.1)
SOURCE_SUCCESS = (0.0, 0.0, -0.15)
TASKS = ("triage-alert", "fix-flaky-test", "summarise-incident", "review-pr",
         "upgrade-dependency", "write-runbook")
OUTCOMES = ("success", "failure", "timeout")
WORKER_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 600.0
RUN_EVERY_S = 12.0


@dataclass
class AgentOutput:
    chunks: list[SpanChunk]  # OTLP spans: the runs' roots and the LLM calls
    spawns: SpanChunk  # the finished workers' spans, described by `events`, not OTLP
    events: list[dict[str, Any]]
    truth: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Workers:
    """One entry per spawned worker (codes index MODELS, CASTES, SOURCES, TASKS, OUTCOMES)."""

    run: I64
    model: I64
    caste: I64
    source: I64
    task: I64
    outcome: I64
    start: I64
    end: I64
    tokens_in: I64
    tokens_out: I64
    stuck: Bools
    trace_hi: U64
    trace_lo: U64
    root_id: U64  # the run's root span
    span_id: U64
    names: list[str]


def generate(ctx: Context, rng: np.random.Generator) -> AgentOutput:
    window_s = (ctx.end_ns - ctx.start_ns) / 1e9
    n_runs = max(1, int(rng.poisson(window_s / RUN_EVERY_S)))
    run_start = np.sort(rng.integers(ctx.start_ns, ctx.end_ns, n_runs, dtype=np.int64))
    per_run = rng.integers(2, 7, n_runs)
    run = np.repeat(np.arange(n_runs), per_run)
    w = len(run)
    model = rng.choice(3, w, p=MODEL_WEIGHTS)
    caste = rng.choice(4, w, p=CASTE_WEIGHTS)
    source = rng.choice(3, w, p=SOURCE_WEIGHTS)
    task = rng.integers(0, len(TASKS), n_runs)
    # Workers are spawned a little apart within their run.
    gaps = rng.uniform(0.05, 1.5, w) * 1e9
    first = np.r_[0, np.cumsum(per_run)[:-1]]
    stagger = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], per_run)
    start = run_start[run] + stagger.astype(np.int64)
    p_ok = (np.take(MODEL_SUCCESS, model) + np.take(CASTE_SUCCESS, caste)
            + np.take(SOURCE_SUCCESS, source))
    u = rng.random(w)
    outcome = np.where(u < p_ok, 0, np.where(rng.random(w) < 0.75, 1, 2))
    median = np.take(MODEL_MEDIAN_S, model) * np.take(CASTE_DURATION, caste)
    dur_s = rng.lognormal(np.log(median), 0.6)
    dur_s = np.where(outcome == 2, WORKER_TIMEOUT_S, np.where(outcome == 1, dur_s * 0.5, dur_s))
    tokens_in = rng.lognormal(np.log(np.take(CASTE_TOKENS, caste)), 0.5).astype(np.int64)
    tokens_out = (tokens_in * rng.uniform(0.1, 0.35, w)).astype(np.int64)
    stuck = np.zeros(w, dtype=bool)
    if ctx.plan.stuck is not None:
        later = np.flatnonzero(start >= ctx.plan.stuck.at_ns)
        stuck[later[0] if len(later) else w - 1] = True
    thi, tlo = ctx.trace_ids.take(n_runs)
    root_id = ctx.span_ids.take(n_runs)
    f = _Workers(run, model, caste, source, task[run], outcome, start,
                 start + (dur_s * 1e9).astype(np.int64), tokens_in, tokens_out, stuck, thi[run],
                 tlo[run], root_id[run], ctx.span_ids.take(w), [f"w-{i + 1:05d}" for i in range(w)])
    res = ctx.resources.of_service("orchestrator")
    roots = _roots(f, run_start, thi, tlo, root_id, task, per_run, rng, res)
    calls = _llm_calls(f, ctx, rng, res)
    truth = _truth(f, n_runs, len(calls))
    return AgentOutput([roots, calls], _spawns(f, res), _events(f), truth)


def _roots(f: _Workers, run_start: I64, thi: U64, tlo: U64, root_id: U64, task: I64,
           per_run: I64, rng: np.random.Generator, res: int) -> SpanChunk:
    """`orchestrate <task>`: ends after its last worker, or times out on a stuck one."""
    n = len(run_start)
    done = ~f.stuck
    last_end = run_start.copy()
    np.maximum.at(last_end, f.run[done], f.end[done])
    end = last_end + rng.integers(50, 500, n) * 1_000_000
    run_stuck = np.zeros(n, dtype=bool)
    run_stuck[f.run[f.stuck]] = True
    stuck_start = np.zeros(n, dtype=np.int64)
    stuck_start[f.run[f.stuck]] = f.start[f.stuck]
    end = np.where(run_stuck, stuck_start + int(RUN_TIMEOUT_S * 1e9), end)
    failed = np.zeros(n, dtype=bool)
    failed[f.run[(f.outcome != 0) & done]] = True
    outcome = np.where(run_stuck, 2, np.where(failed, 1, 0))
    message = col.where(run_stuck, f"worker did not complete within {RUN_TIMEOUT_S:.0f} s",
                        col.where(failed, "one or more workers failed", "", n), n)
    return plain_chunk(
        run_start, end, thi, tlo, root_id, np.zeros(n, dtype=np.uint64), np.full(n, res),
        col.concat(["orchestrate ", col.choose(task, TASKS)], n),
        col.const(SpanKind.INTERNAL.value, n),
        col.attr_map({
            "agent.task": col.choose(task, TASKS),
            "agent.run.id": col.concat(["run-", col.ints(np.arange(1, n + 1))], n),
            "agent.workers": col.ints(per_run),
            "agent.outcome": col.choose(outcome, OUTCOMES),
        }, n),
        np.where(outcome != 0, 2, 1).astype(np.int8), message)


def _spawns(f: _Workers, res: int) -> SpanChunk:
    """`spawn <caste>` per finished worker (a stuck worker's span never ends, so never exports)."""
    done = np.flatnonzero(~f.stuck)
    n = len(done)
    outcome = f.outcome[done]
    messages = ("", "worker failed: tests still failing",
                f"worker timed out after {WORKER_TIMEOUT_S:.0f} s")
    return plain_chunk(
        f.start[done], f.end[done], f.trace_hi[done], f.trace_lo[done], f.span_id[done],
        f.root_id[done], np.full(n, res),
        col.concat(["spawn ", col.choose(f.caste[done], CASTES)], n),
        col.const(SpanKind.INTERNAL.value, n),
        col.attr_map({
            "agent.worker.id": pa.array([f.names[i] for i in done], pa.string()),
            "agent.model": col.choose(f.model[done], MODELS),
            "agent.caste": col.choose(f.caste[done], CASTES),
            "agent.task": col.choose(f.task[done], TASKS),
            "agent.routing.source": col.choose(f.source[done], SOURCES),
            "agent.outcome": col.choose(outcome, OUTCOMES),
            "gen_ai.usage.input_tokens": col.ints(f.tokens_in[done]),
            "gen_ai.usage.output_tokens": col.ints(f.tokens_out[done]),
        }, n),
        np.where(outcome != 0, 2, 1).astype(np.int8), col.choose(outcome, messages))


def _llm_calls(f: _Workers, ctx: Context, rng: np.random.Generator, res: int) -> SpanChunk:
    """1–4 sequential `chat <model>` calls inside each finished worker, splitting its tokens."""
    done = np.flatnonzero(~f.stuck)
    per = rng.integers(1, 5, len(done))
    wk = np.repeat(done, per)
    n = len(wk)
    j = np.arange(n) - np.repeat(np.cumsum(per) - per, per)
    c = np.repeat(per, per)
    slot = (f.end[wk] - f.start[wk]) // c
    start = f.start[wk] + j * slot + (slot * 0.05).astype(np.int64)
    end = start + (slot * rng.uniform(0.5, 0.9, n)).astype(np.int64)
    t_in = f.tokens_in[wk] // c + np.where(j == 0, f.tokens_in[wk] % c, 0)
    t_out = f.tokens_out[wk] // c + np.where(j == 0, f.tokens_out[wk] % c, 0)
    model = f.model[wk]
    return plain_chunk(
        start, end, f.trace_hi[wk], f.trace_lo[wk], ctx.span_ids.take(n), f.span_id[wk],
        np.full(n, res), col.concat(["chat ", col.choose(model, MODELS)], n),
        col.const(SpanKind.CLIENT.value, n),
        col.attr_map({
            "gen_ai.operation.name": col.const("chat", n),
            "gen_ai.provider.name": col.choose(model, PROVIDER),
            "gen_ai.request.model": col.choose(model, MODELS),
            "gen_ai.request.temperature": col.const("0.2", n),
            "gen_ai.usage.input_tokens": col.ints(t_in),
            "gen_ai.usage.output_tokens": col.ints(t_out),
        }, n),
        np.zeros(n, dtype=np.int8), col.const("", n))


def _events(f: _Workers) -> list[dict[str, Any]]:
    """The orchestrator's own JSON-lines log: spawn, then complete (unless stuck). Each line
    names the worker's span and its parent, the run's `orchestrate` root (an OTLP span)."""
    trace = trace_id_strings(f.trace_hi, f.trace_lo).to_pylist()
    span = span_id_strings(f.span_id).to_pylist()
    parent = span_id_strings(f.root_id).to_pylist()
    rows: list[tuple[int, int, dict[str, Any]]] = []
    for i, name in enumerate(f.names):
        common = {"model": MODELS[f.model[i]], "caste": CASTES[f.caste[i]],
                  "task": TASKS[f.task[i]], "source": SOURCES[f.source[i]], "worker": name,
                  "trace_id": trace[i], "span_id": span[i], "parent_id": parent[i]}
        start, end = int(f.start[i]), int(f.end[i])
        rows.append((start, 0, {"ts": round(start / 1e9, 6), "event": "spawn", **common}))
        if not f.stuck[i]:
            rows.append((end, 1, {
                "ts": round(end / 1e9, 6), "event": "complete", **common,
                "outcome": OUTCOMES[f.outcome[i]], "duration_ms": round((end - start) / 1e6, 3),
                "tokens": int(f.tokens_in[i] + f.tokens_out[i]),
            }))
    rows.sort(key=lambda r: (r[0], r[1], r[2]["worker"]))
    return [r[2] for r in rows]


def _truth(f: _Workers, runs: int, calls: int) -> dict[str, Any]:
    done = ~f.stuck
    by_pair: dict[str, dict[str, int]] = {}
    for m, mname in enumerate(MODELS):
        for c, cname in enumerate(CASTES):
            sel = done & (f.model == m) & (f.caste == c)
            by_pair[f"{mname}/{cname}"] = {o: int((sel & (f.outcome == k)).sum())
                                           for k, o in enumerate(OUTCOMES)}
    by_source = {s: {o: int((done & (f.source == k) & (f.outcome == j)).sum())
                     for j, o in enumerate(OUTCOMES)} for k, s in enumerate(SOURCES)}
    stuck = np.flatnonzero(f.stuck)
    return {
        "runs": runs, "spawns": len(f.names), "completes": int(done.sum()), "llm_calls": calls,
        # Where the worker spans live: only in the agent events (agents.jsonl), staged as
        # SimResult.agent_spans; never in the OTLP spans. Each is a child of its run's
        # `orchestrate` root (OTLP) and the parent of its `chat` calls (OTLP). A stuck worker
        # has no staged span, only its spawn event (an open span once ingested).
        "spawn_spans": {
            "source": "agent_events", "staged_as": "agent_spans", "spans": int(done.sum()),
            "errors": int((done & (f.outcome != 0)).sum()), "open_in_events": len(stuck),
            "parent": "orchestrate <task>", "children": "chat <model>",
        },
        "stuck_workers": [f.names[i] for i in stuck],
        "stuck_spawn_ns": [int(f.start[i]) for i in stuck],
        "outcomes_by_model_caste": by_pair, "outcomes_by_source": by_source,
        "success_probability": {
            "model": dict(zip(MODELS, MODEL_SUCCESS, strict=True)),
            "caste_adjustment": dict(zip(CASTES, CASTE_SUCCESS, strict=True)),
            "source_adjustment": dict(zip(SOURCES, SOURCE_SUCCESS, strict=True)),
        },
    }
