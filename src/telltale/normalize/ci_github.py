"""Decode GitHub Actions workflow runs and jobs into a run → job → step span tree.

Accepts, as one JSON document or as JSON lines (one document a line):
- REST API output (`gh api`, snake_case): `{"workflow_runs": [...]}`, `{"jobs": [...]}`, or
  one run or job object;
- `gh run list --json ...` (a list of camelCase runs) and `gh run view --json ...` (one run,
  with `jobs` and their `steps` when asked for);
- webhook payloads `workflow_run` and `workflow_job` (any action: queued and in-progress ones
  become instant spans with `cicd.pipeline.run.state`).
Span attributes follow the CI/CD and VCS semantic conventions (ci_spans.py); ids are derived from
GitHub's run id, attempt, job id and step number, so re-imports land on the same spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from telltale.model import QuarantineReason, Signal, SpanKind
from telltale.normalize import ci_spans as ci
from telltale.normalize.fields import span_table
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

SYSTEM = "github"
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# gh's JSON names that are not just the REST name in camelCase.
_GH_NAMES = {"databaseId": "id", "attempt": "run_attempt", "url": "html_url"}

Doc = dict[str, Any]


def _snake(obj: Doc, top: bool = True) -> Doc:
    """gh's camelCase keys → the REST API's snake_case (nested jobs and steps too)."""
    out: Doc = {}
    for key, value in obj.items():
        name = _GH_NAMES.get(key) or _CAMEL.sub("_", key).lower()
        if top and key == "number":
            name = "run_number"  # a step's `number` is its own
        if isinstance(value, list):
            value = [_snake(v, top=False) if isinstance(v, dict) else v for v in value]
        out[name] = value
    if "workflow_name" in out and out.get("name") in (None, ""):
        out["name"] = out["workflow_name"]
    elif "workflow_name" in out and "run_id" not in out and "run_number" in out:
        out["display_title"] = out.get("display_title") or out.get("name")
        out["name"] = out["workflow_name"]  # gh's run `name` is the title, not the workflow
    return out


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _repo_attrs(repo: object) -> dict[str, str]:
    if not isinstance(repo, dict):
        return {}
    return {"vcs.repository.url.full": _text(repo.get("html_url")),
            "vcs.repository.name": _text(repo.get("full_name") or repo.get("name")),
            "vcs.provider.name": SYSTEM}


def _vcs(obj: Doc) -> dict[str, str]:
    prs = obj.get("pull_requests")
    attrs = {"vcs.ref.head.name": _text(obj.get("head_branch")),
             "vcs.ref.head.revision": _text(obj.get("head_sha"))}
    if isinstance(prs, list) and prs and isinstance(prs[0], dict):
        attrs["vcs.change.id"] = _text(prs[0].get("number"))
    return attrs


def _run(run: Doc, pos: str, workflow: str = "", repo: object = None) -> list[ci.CiSpan]:
    run_id, attempt = _text(run.get("id")), int(run.get("run_attempt") or 1)
    name = _text(run.get("name")) or workflow or _text(run.get("path")) or "workflow"
    attrs = {"cicd.pipeline.name": name, "cicd.pipeline.run.id": run_id,
             "cicd.pipeline.run.url.full": _text(run.get("html_url")),
             ci.ATTEMPT_ATTR: str(attempt), ci.EVENT_ATTR: _text(run.get("event")),
             "ci.run.number": _text(run.get("run_number")),
             "ci.run.title": _text(run.get("display_title")),
             **_vcs(run), **_repo_attrs(repo if repo is not None else run.get("repository"))}
    result = ci.ci_result(run.get("conclusion"))
    done = _text(run.get("status")).lower() == "completed"
    links = ([(ci.trace_id(SYSTEM, run_id, attempt - 1), ci.run_span_id(SYSTEM, run_id, attempt - 1))]
             if attempt > 1 else [])
    span = ci.CiSpan(
        pos, run, f"RUN {name}", ci.trace_id(SYSTEM, run_id, attempt),
        ci.run_span_id(SYSTEM, run_id, attempt), "", SpanKind.SERVER,
        ci.to_ns(run.get("run_started_at") or run.get("started_at") or run.get("created_at")),
        ci.to_ns(run.get("updated_at") or run.get("completed_at")) if done else None,
        result, ci.ci_state(run.get("status")), ci.to_ns(run.get("created_at")), attrs, links)
    out = [span]
    jobs = run.get("jobs")
    for i, job in enumerate(jobs if isinstance(jobs, list) else [], start=1):
        if isinstance(job, dict):
            context = {"run_id": run_id, "run_attempt": attempt, "workflow_name": name,
                       "head_branch": run.get("head_branch"), "head_sha": run.get("head_sha")}
            out += _job({**context, **job}, f"{pos} job {i}")
    if jobs and span.end is not None:
        ci.clamp_to_children(span, [s for s in out[1:] if s.parent == span.span])
    return out


def _job(job: Doc, pos: str) -> list[ci.CiSpan]:
    run_id, attempt = _text(job.get("run_id")), int(job.get("run_attempt") or 1)
    job_id, name = _text(job.get("id")), _text(job.get("name")) or "job"
    common = {"cicd.pipeline.name": _text(job.get("workflow_name")),
              "cicd.pipeline.run.id": run_id, "cicd.pipeline.task.name": name, **_vcs(job)}
    attrs = {**common, "cicd.pipeline.task.run.id": job_id,
             "cicd.pipeline.task.run.url.full": _text(job.get("html_url")),
             "cicd.pipeline.task.run.result": _text(ci.ci_result(job.get("conclusion"))),
             "cicd.worker.name": _text(job.get("runner_name")),
             "cicd.worker.id": _text(job.get("runner_id")), ci.ATTEMPT_ATTR: str(attempt)}
    span_id = ci.job_span_id(SYSTEM, job_id)
    trace = ci.trace_id(SYSTEM, run_id, attempt)
    span = ci.CiSpan(pos, job, name, trace, span_id, ci.run_span_id(SYSTEM, run_id, attempt),
                     SpanKind.INTERNAL, ci.to_ns(job.get("started_at")),
                     ci.to_ns(job.get("completed_at")), ci.ci_result(job.get("conclusion")),
                     ci.ci_state(job.get("status")), ci.to_ns(job.get("created_at")), attrs)
    steps: list[ci.CiSpan] = []
    raw_steps = job.get("steps")
    for i, step in enumerate(raw_steps if isinstance(raw_steps, list) else [], start=1):
        if not isinstance(step, dict):
            continue
        number = step.get("number") or i
        result = ci.ci_result(step.get("conclusion"))
        steps.append(ci.CiSpan(
            f"{pos} step {i}", step, _text(step.get("name")) or f"step {number}", trace,
            ci.step_span_id(SYSTEM, job_id, number), span_id, SpanKind.INTERNAL,
            ci.to_ns(step.get("started_at")), ci.to_ns(step.get("completed_at")), result,
            ci.ci_state(step.get("status")),
            attrs={**common, "cicd.pipeline.task.run.id": job_id, "ci.step.name":
                   _text(step.get("name")), ci.STEP_NUMBER_ATTR: str(number),
                   "cicd.pipeline.task.run.result": _text(result)}))
    ci.clamp_to_children(span, steps)
    return [span, *steps]


def _spans(doc: object, pos: str) -> Iterator[ci.CiSpan] | None:
    """The spans of one document, or None when it is no GitHub Actions shape we know."""
    if isinstance(doc, list):
        return (s for i, item in enumerate(doc, start=1) if isinstance(item, dict)
                for s in (_spans(item, f"{pos} item {i}") or ()))
    if not isinstance(doc, dict):
        return None
    if "databaseId" in doc or "workflowName" in doc:
        doc = _snake(doc)
    if isinstance(doc.get("workflow_runs"), list):
        return (s for i, r in enumerate(doc["workflow_runs"], start=1) if isinstance(r, dict)
                for s in _run(r, f"{pos} run {i}"))
    if isinstance(doc.get("workflow_run"), dict):
        workflow = doc.get("workflow")
        name = _text(workflow.get("name")) if isinstance(workflow, dict) else ""
        return iter(_run(doc["workflow_run"], pos, name, doc.get("repository")))
    if isinstance(doc.get("workflow_job"), dict):
        return iter(_job(doc["workflow_job"], pos))
    if isinstance(doc.get("jobs"), list) and "id" not in doc:
        return (s for i, j in enumerate(doc["jobs"], start=1) if isinstance(j, dict)
                for s in _job(j, f"{pos} job {i}"))
    if "run_id" in doc and "id" in doc:
        return iter(_job(doc, pos))
    if "id" in doc and ("run_number" in doc or "run_attempt" in doc or "head_sha" in doc):
        return iter(_run(doc, pos))
    return None


def _documents(data: bytes, first_line: int) -> Iterator[tuple[str, bytes]]:
    """The whole input as one document when it parses, else one document per line."""
    try:
        orjson.loads(data)
        yield "document", data
        return
    except orjson.JSONDecodeError:
        pass
    for n, line in enumerate(data.split(b"\n"), start=first_line):
        if line.strip():
            yield f"line {n}", line


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    """GitHub Actions JSON → staged spans; documents of unknown shape become rejects."""
    out = Decoded()
    rows: list[dict[str, object]] = []
    for pos, chunk in _documents(data, options.first_line):
        raw = chunk.decode("utf-8", "backslashreplace")
        try:
            doc = orjson.loads(chunk)
        except orjson.JSONDecodeError as exc:
            out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.UNPARSABLE, raw,
                                      f"not JSON: {exc}"))
            continue
        spans = _spans(doc, pos)
        if spans is None:
            out.rejects.append(Reject(Signal.TRACES, pos, QuarantineReason.BAD_SHAPE, raw,
                                      "not a GitHub Actions run, job, or webhook payload"))
            continue
        rows += [s.row() for s in spans]
    if rows:
        out.spans.append(span_table(rows))
    return out
