"""Decode the generic CI JSON-lines format (any CI system) into a run → job → step span tree.

One object a line; `"ci"` says what it is (docs/ci.md has the full table):

    {"ci": "run",  "system": "gitlab", "pipeline": "build", "run_id": "812", "attempt": 1,
     "result": "success", "created": "2024-05-01T10:00:00Z", "started": ..., "finished": ...,
     "branch": "main", "revision": "3f2a...", "event": "push", "files_changed": 4,
     "lines_changed": 120, "url": "...", "attributes": {"team": "core"}}
    {"ci": "job",  "run_id": "812", "attempt": 1, "job": "test", "job_id": "812-test", ...}
    {"ci": "step", "run_id": "812", "attempt": 1, "job_id": "812-test", "step": "pytest",
     "step_number": 3, ...}

Times are ISO-8601 or epoch (s, ms or ns by magnitude); `result` takes the CI/CD conventions'
values or common spellings (passed, failed, canceled...); `status` (queued, running) marks
unfinished work. Ids are hashed from (system, run id, attempt, job id, step number), the same
way as for GitHub, so a re-import lands on the same spans.
"""

from __future__ import annotations

from typing import Any

from telltale.model import QuarantineReason, Signal, SpanKind
from telltale.normalize import ci_spans as ci
from telltale.normalize import json_lines
from telltale.normalize.fields import attr_text, span_table
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

KINDS = ("run", "job", "step")


def _t(value: object) -> str:
    return "" if value is None else attr_text(value)


def _span(rec: dict[str, Any], pos: str) -> ci.CiSpan | str:
    """The record's span, or why it cannot be one."""
    kind, system = rec.get("ci"), _t(rec.get("system")) or "ci"
    run_id, job_id = _t(rec.get("run_id")), _t(rec.get("job_id"))
    if kind not in KINDS:
        return f"`ci` must be one of {', '.join(KINDS)}"
    if not run_id or (kind == "step" and not job_id):
        return "a record needs run_id (and a step its job_id)"
    try:
        attempt = int(rec.get("attempt") or 1)
    except (TypeError, ValueError):
        return "attempt is not a number"
    result = ci.ci_result(rec.get("result"))
    attrs = {"cicd.pipeline.name": _t(rec.get("pipeline")), "cicd.pipeline.run.id": run_id,
             "vcs.ref.head.name": _t(rec.get("branch")),
             "vcs.ref.head.revision": _t(rec.get("revision")), ci.EVENT_ATTR: _t(rec.get("event")),
             ci.FILES_ATTR: _t(rec.get("files_changed")), ci.LINES_ATTR: _t(rec.get("lines_changed")),
             ci.ATTEMPT_ATTR: str(attempt), "cicd.worker.name": _t(rec.get("worker")),
             "ci.system": system}
    extra = rec.get("attributes")
    if isinstance(extra, dict):
        attrs.update({str(k): attr_text(v) for k, v in extra.items()})
    trace = ci.trace_id(system, run_id, attempt)
    links: list[tuple[str, str]] = []
    if kind == "run":
        attrs["cicd.pipeline.run.url.full"] = _t(rec.get("url"))
        name, span_id, parent, span_kind = (f"RUN {attrs['cicd.pipeline.name'] or 'pipeline'}",
                                            ci.run_span_id(system, run_id, attempt), "",
                                            SpanKind.SERVER)
        if attempt > 1:
            links.append((ci.trace_id(system, run_id, attempt - 1),
                          ci.run_span_id(system, run_id, attempt - 1)))
    else:
        job_id = job_id or f"{run_id}:{attempt}:{_t(rec.get('job'))}"
        attrs.update({"cicd.pipeline.task.name": _t(rec.get("job")),
                      "cicd.pipeline.task.run.id": job_id,
                      "cicd.pipeline.task.run.result": _t(result)})
        if kind == "job":
            attrs["cicd.pipeline.task.run.url.full"] = _t(rec.get("url"))
            name, span_id, parent = (_t(rec.get("job")) or "job", ci.job_span_id(system, job_id),
                                     ci.run_span_id(system, run_id, attempt))
        else:
            number = _t(rec.get("step_number")) or _t(rec.get("step"))
            attrs.update({"ci.step.name": _t(rec.get("step")), ci.STEP_NUMBER_ATTR: number})
            name, span_id, parent = (_t(rec.get("step")) or f"step {number}",
                                     ci.step_span_id(system, job_id, number),
                                     ci.job_span_id(system, job_id))
        span_kind = SpanKind.INTERNAL
    return ci.CiSpan(pos, rec, name, trace, span_id, parent, span_kind,
                     ci.to_ns(rec.get("started")), ci.to_ns(rec.get("finished")), result,
                     ci.ci_state(rec.get("status")), ci.to_ns(rec.get("created")), attrs, links)


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """CI JSON lines → staged spans; a line that is not a CI record becomes a reject."""
    out = Decoded()
    rows: list[dict[str, object]] = []
    for one in json_lines.objects(data, out.rejects, what="a CI record",
                                  first_line=options.first_line):
        span = _span(one.record, one.pos)
        if isinstance(span, str):
            out.rejects.append(Reject(Signal.TRACES, one.pos, QuarantineReason.BAD_SHAPE,
                                      one.text, span))
        else:
            rows.append(span.row())
    if rows:
        out.spans.append(span_table(rows))
    return out
