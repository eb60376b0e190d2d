"""CI runs, jobs and steps → staged spans following the OTel CI/CD semantic conventions.

Shared by the GitHub Actions decoder (ci_github.py) and the generic CI JSON-lines decoder
(ci_jsonl.py). A run is a Server span `RUN <pipeline>` (trace = the run attempt), each job an
Internal child, each step a child of its job. Ids are hashes of the CI system's own ids, so the
same run imported twice (or from a webhook and from the REST API) gets the same trace and span
ids: the store's duplicate flag, not a second run, is what a re-import produces.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from telltale.model import SpanKind, StatusCode
from telltale.normalize.fields import iso_to_ns, record_size

SERVICE = "ci"
# Attributes the conventions do not (yet) define, kept in one `ci.` namespace.
QUEUE_ATTR = "ci.queue_time_s"
EVENT_ATTR = "ci.event"
FILES_ATTR = "ci.files_changed"
LINES_ATTR = "ci.lines_changed"
STEP_NUMBER_ATTR = "ci.step.number"
ATTEMPT_ATTR = "ci.run.attempt"
CLOCK_ATTR = "ci.clock_adjusted"

# GitHub conclusions (and common spellings of other systems) → cicd.pipeline.result values.
_RESULTS = {
    "success": "success", "succeeded": "success", "passed": "success", "ok": "success",
    "neutral": "success", "failure": "failure", "failed": "failure", "fail": "failure",
    "cancelled": "cancellation", "canceled": "cancellation", "cancellation": "cancellation",
    "timed_out": "timeout", "timeout": "timeout", "skipped": "skip", "skip": "skip",
    "action_required": "error", "startup_failure": "error", "stale": "error", "error": "error",
}
_ERROR_RESULTS = {"failure", "timeout", "error"}
# Not finished yet → cicd.pipeline.run.state.
_STATES = {"queued": "pending", "waiting": "pending", "requested": "pending", "pending": "pending",
           "in_progress": "executing", "running": "executing"}


def ci_result(conclusion: object) -> str | None:
    return _RESULTS.get(str(conclusion).lower()) if conclusion not in (None, "") else None


def ci_state(status: object) -> str | None:
    return _STATES.get(str(status).lower()) if status not in (None, "") else None


def _hex(key: str, width: int) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:width]


def trace_id(system: str, run_id: str, attempt: int) -> str:
    return _hex(f"{system}:run:{run_id}:{attempt}", 32)


def run_span_id(system: str, run_id: str, attempt: int) -> str:
    return _hex(f"{system}:run-span:{run_id}:{attempt}", 16)


def job_span_id(system: str, job_id: str) -> str:
    return _hex(f"{system}:job:{job_id}", 16)


def step_span_id(system: str, job_id: str, number: int | str) -> str:
    return _hex(f"{system}:step:{job_id}:{number}", 16)


def to_ns(value: object) -> int | None:
    """ISO-8601 text (GitHub's form), or epoch seconds / ms / ns by magnitude."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        scale = 1e9 if v < 1e11 else 1e6 if v < 1e14 else 1e3 if v < 1e17 else 1.0
        return int(v * scale)
    return iso_to_ns(str(value))


@dataclass
class CiSpan:
    """One run, job or step before it becomes a staged row; `created` only matters for queues."""

    pos: str
    raw: object
    name: str
    trace: str
    span: str
    parent: str
    kind: SpanKind
    start: int | None
    end: int | None
    result: str | None
    state: str | None = None
    created: int | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id)

    def row(self) -> dict[str, object]:
        attrs = {k: v for k, v in self.attrs.items() if v not in ("", "None")}
        start, end = self.start, self.end
        if start is None:
            start = self.created
        if end is None and start is not None:
            end = start  # not finished: an instant span, its state says so
        if self.result is not None:
            key = ("cicd.pipeline.task.run.result" if "cicd.pipeline.task.name" in attrs
                   else "cicd.pipeline.result")
            attrs[key] = self.result
        if self.state and self.result is None:
            attrs["cicd.pipeline.run.state"] = self.state
        if self.created is not None and self.start is not None and QUEUE_ATTR not in attrs:
            attrs[QUEUE_ATTR] = f"{max(self.start - self.created, 0) / 1e9:.3f}"
        status = (StatusCode.ERROR if self.result in _ERROR_RESULTS
                  else StatusCode.OK if self.result == "success" else StatusCode.UNSET)
        if status is StatusCode.ERROR:
            attrs["error.type"] = self.result or "failure"
        return {
            "Pos": self.pos, "RecordBytes": record_size(self.raw), "StartNs": start, "EndNs": end,
            "TraceId": self.trace, "SpanId": self.span, "ParentSpanId": self.parent,
            "TraceState": None, "SpanName": self.name, "SpanKind": self.kind.value,
            "ServiceName": SERVICE, "ResourceAttributes": [("service.name", SERVICE)],
            "ScopeName": "telltale.ci", "ScopeVersion": None,
            "SpanAttributes": sorted(attrs.items()), "StatusCode": status.value,
            "StatusMessage": self.result if status is StatusCode.ERROR else None,
            "Events": [], "Links": [{"TraceId": t, "SpanId": s, "TraceState": None,
                                     "Attributes": [("ci.link", "previous_attempt")]}
                                    for t, s in self.links],
        }


def clamp_to_children(parent: CiSpan, children: list[CiSpan]) -> None:
    """Stretch a job over its steps when its own times disagree with theirs.

    GitHub sends jobs whose `started_at` is later than their steps' (a re-queued job keeps the
    steps of the first pick-up); the steps' times are what ran, so the job widens to cover them
    and says so in `ci.clock_adjusted` rather than storing a child outside its parent."""
    starts = [c.start for c in children if c.start is not None]
    ends = [c.end for c in children if c.end is not None]
    notes = []
    if starts and parent.start is not None and min(starts) < parent.start:
        notes.append(f"started_at {(parent.start - min(starts)) / 1e9:.0f}s after its first step")
        parent.attrs["ci.reported_start_ns"] = str(parent.start)
        if parent.created is not None:  # queue time is what GitHub reported, not the clamp's
            parent.attrs[QUEUE_ATTR] = f"{max(parent.start - parent.created, 0) / 1e9:.3f}"
        parent.start = min(starts)
    if ends and parent.end is not None and max(ends) > parent.end:
        notes.append(f"completed_at {(max(ends) - parent.end) / 1e9:.0f}s before its last step")
        parent.end = max(ends)
    if notes:
        parent.attrs[CLOCK_ATTR] = "; ".join(notes)


_GITHUB = re.compile(rb'"(workflow_runs|workflow_run|workflow_job|run_attempt|workflowName)"\s*:'
                     rb'|"databaseId"\s*:.*"headSha"\s*:', re.S)
_CI_JSONL = re.compile(rb'"ci"\s*:\s*"(run|job|step)"')


def sniff(head: bytes) -> str | None:
    """"github-actions", "ci-jsonl" or None: the detection hook for normalize/detect.py."""
    if _CI_JSONL.search(head[:65536]):
        return "ci-jsonl"
    if _GITHUB.search(head[:65536]):
        return "github-actions"
    return None
