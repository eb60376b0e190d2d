"""A deterministic simulator of a realistic system, with ground truth.

`simulate(SimConfig())` yields 30 minutes of a small web shop, an AI-agent orchestrator and a
CI runner: traces (staged spans), logs, host and service metrics, agent JSON-lines events and a
`truth` dict describing the incidents injected (latency regression after a deploy, an error
burst tied to one attribute value, orphan spans, a broken file, a swap crisis, a flaky CI job,
a stuck worker) with counts measured from the emitted data. The same seed gives byte-identical
files. Writers produce OTLP/JSON lines, length-delimited OTLP protobuf, agent events, a torn
traces file and the truth as JSON.

The orchestrator's worker spans are not OTLP spans: they exist only as agent events (`spawn` +
`complete` lines naming the span, its trace and its parent, the run's OTLP root), so traces.*
and agents.jsonl together hold each agent trace once and whole. `SimResult.agent_spans` stages
those worker spans, so `decoded()` commits the same spans as ingesting the files would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from google.protobuf.json_format import MessageToDict

from telltale.model import MetricType
from telltale.normalize.staging import Decoded
from telltale.sim import agents, broken, ci, incidents, logs, metrics, traces, truth, write_json, write_proto
from telltale.sim.broken import BROKEN_FILE, BrokenPlan
from telltale.sim.ids import IdAllocator, TraceIds, rng_for
from telltale.sim.spans import Context, assemble
from telltale.sim.topology import Resources, flows

# 2026-01-15T10:00:00Z
DEFAULT_START_NS = 1_768_471_200_000_000_000

__all__ = [
    "BROKEN_FILE",
    "SimConfig",
    "SimResult",
    "simulate",
    "write_agent_events",
    "write_broken_file",
    "write_files",
    "write_otlp_json",
    "write_otlp_proto",
    "write_truth",
]


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    start_ns: int = DEFAULT_START_NS
    duration_s: float = 1800.0
    # ~11 spans per shop request: 17/s gives ~330 000 spans in the default 30 minutes.
    requests_per_s: float = 17.0
    incidents: bool = True
    # (lines in the broken file, how many of them are broken), and spans per line there.
    broken_lines: tuple[int, int] = (210, 190)
    broken_spans_per_line: int = 20
    # Spans (or log records) per request line in the OTLP files.
    spans_per_request: int = write_json.SPANS_PER_LINE


@dataclass
class SimResult:
    config: SimConfig
    spans: pa.Table  # the OTLP spans (traces.jsonl, traces.binpb)
    agent_spans: pa.Table  # the worker spans the agent events describe; not in `spans`
    logs: pa.Table
    metrics: dict[MetricType, pa.Table]
    agent_events: list[dict[str, Any]]
    truth: dict[str, Any]
    broken_plan: BrokenPlan = field(repr=False)

    def decoded(self) -> Decoded:
        """Everything as staged tables, ready for `Store.commit` (the broken file is not here):
        the OTLP spans and the agent events' worker spans, logs and metrics."""
        return Decoded(spans=[self.spans, self.agent_spans], logs=[self.logs],
                       metrics={kind: [table] for kind, table in self.metrics.items()})


def simulate(config: SimConfig | None = None) -> SimResult:
    config = config or SimConfig()
    end_ns = config.start_ns + int(config.duration_s * 1e9)
    plan = incidents.plan(config.start_ns, config.duration_s, config.incidents)
    ctx = Context(config.start_ns, end_ns, plan, Resources(plan.new_versions),
                  IdAllocator(config.seed, "span"), TraceIds(config.seed))
    chunks = traces.generate(flows(), config.requests_per_s, ctx, rng_for(config.seed, "traces"))
    agent_out = agents.generate(ctx, rng_for(config.seed, "agents"))
    ci_out = ci.generate(ctx, rng_for(config.seed, "ci"))
    spans = assemble([*chunks, *agent_out.chunks, ci_out.chunk], ctx.resources)
    agent_spans = assemble([agent_out.spawns], ctx.resources, "sim agent span ")
    log_table, templates = logs.generate(spans, agent_out.events, ctx,
                                         rng_for(config.seed, "logs"))
    metric_tables = {
        MetricType.GAUGE: metrics.host_gauges(spans, ctx, rng_for(config.seed, "hosts")),
        **metrics.service_metrics(spans, ctx),
    }
    lines, bad = config.broken_lines
    # Agent traces are split between the OTLP spans and the agent events: the torn file (OTLP
    # only) leaves them out, or their LLM calls would be orphans there.
    split = pa.array(sorted({e["trace_id"] for e in agent_out.events}), pa.string())
    broken_plan = broken.plan(spans, lines, bad, config.broken_spans_per_line, config.seed,
                              exclude_traces=split)
    ground = truth.build(plan, config.start_ns, end_ns, spans, agent_spans, log_table,
                         metric_tables, agent_out, ci_out, broken.truth(spans, broken_plan),
                         templates)
    ground["config"] = {"seed": config.seed, "start_ns": config.start_ns,
                        "duration_s": config.duration_s, "requests_per_s": config.requests_per_s,
                        "incidents": config.incidents}
    return SimResult(config, spans, agent_spans, log_table, metric_tables, agent_out.events,
                     ground, broken_plan)


def write_otlp_json(result: SimResult, directory: Path | str) -> list[Path]:
    """traces.jsonl, logs.jsonl, metrics.jsonl: one Export*ServiceRequest per line."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    per = result.config.spans_per_request
    paths = [write_json.write_table(result.spans, out / "traces.jsonl", "traces", per),
             write_json.write_table(result.logs, out / "logs.jsonl", "logs", per)]
    requests = write_proto.metric_requests(result.metrics)
    with (out / "metrics.jsonl").open("wb") as f:
        for request in requests:
            f.write(orjson.dumps(_to_dict(request), option=orjson.OPT_APPEND_NEWLINE))
    return [*paths, out / "metrics.jsonl"]


def _to_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, use_integers_for_enums=True)


def write_otlp_proto(result: SimResult, directory: Path | str) -> list[Path]:
    """traces.binpb, logs.binpb, metrics.binpb: length-delimited Export*ServiceRequest."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    per = result.config.spans_per_request
    return [
        write_proto.write_delimited(out / "traces.binpb",
                                    write_proto.trace_requests(result.spans, per)),
        write_proto.write_delimited(out / "logs.binpb", write_proto.log_requests(result.logs, per)),
        write_proto.write_delimited(out / "metrics.binpb",
                                    write_proto.metric_requests(result.metrics)),
    ]


def write_agent_events(result: SimResult, path: Path | str) -> Path:
    path = Path(path)
    path.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE)
                              for e in result.agent_events))
    return path


def write_broken_file(result: SimResult, path: Path | str) -> Path:
    """OTLP/JSON traces lines, the ones listed in truth["broken_file"] damaged."""
    return broken.write(result.spans, result.broken_plan, Path(path))


def write_files(result: SimResult, telemetry_dir: Path | str, truth_path: Path | str, *,
                json: bool = True, proto: bool = False) -> list[Path]:
    """Everything `ingest` reads (OTLP files, agent events, the torn file) into
    `telemetry_dir`, and the ground truth to `truth_path` (kept apart so a directory ingest
    does not read it). Returns the telemetry files."""
    out = Path(telemetry_dir)
    files = [*(write_otlp_json(result, out) if json else []),
             *(write_otlp_proto(result, out) if proto else [])]
    files += [write_agent_events(result, out / "agents.jsonl"),
              write_broken_file(result, out / BROKEN_FILE)]
    write_truth(result, truth_path)
    return files


def write_truth(result: SimResult, path: Path | str) -> Path:
    path = Path(path)
    path.write_bytes(orjson.dumps(result.truth, option=orjson.OPT_INDENT_2
                                  | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
    return path
