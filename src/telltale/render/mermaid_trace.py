"""One trace as Mermaid: a `sequenceDiagram` of the calls between its services and a `gantt`
timeline of its spans. Pure functions of a `TraceDetail`, so the CLI and the web dashboard
draw the same text.

Sequence: one participant per service, in order of first appearance. A span whose parent is
in another service is a call (parent's service → span's service, the callee's operation) with
a dashed reply carrying its duration; an errored callee replies with a cross (`--x`) and its
status message. A client span whose children all run elsewhere is drawn only as that call;
other same-service spans are self-calls. Roots and orphans (spans whose parent was never
stored) start with a note.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from telltale.analyses.phases import Phases
from telltale.analyses.trace_detail import SpanDetail, TraceDetail
from telltale.render.mermaid_text import clip, duration, label, line_label

MAX_MESSAGES = 200
MAX_TASKS = 200
# Past this, Mermaid refuses the text anyway (maxTextSize 50,000) and the walk gets deep.
LIMIT = 400
NS_PER_MS = 1_000_000


def _is_client(span: SpanDetail) -> bool:
    return span.kind.upper().removeprefix("SPAN_KIND_") in ("CLIENT", "PRODUCER")


def _span_text(span: SpanDetail, name_len: int = 80) -> str:
    return f"{clip(span.name, name_len)} ({duration(span.duration_ns)})"


def _error_text(span: SpanDetail) -> str:
    return "error" + (f" “{clip(span.status_message, 60)}”" if span.status_message else "")


@dataclass
class _Sequence:
    trace: TraceDetail
    max_messages: int
    critical: Collection[str]
    aliases: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    messages: int = 0
    drawn: int = 0  # spans shown as a note, a call or a self-call (or standing for a call)
    capped: bool = False

    def __post_init__(self) -> None:
        for span in self.trace.spans:  # start order: participants in order of appearance
            self.aliases.setdefault(span.service, f"s{len(self.aliases)}")
        self.kids = self.trace.children()

    def mark(self, span: SpanDetail) -> str:
        return " ★" if span.span_id in self.critical else ""

    def room(self, needed: int, open_replies: int) -> bool:
        fits = self.messages + needed + open_replies <= self.max_messages
        self.capped |= not fits
        return fits

    def walk(self, span: SpanDetail, open_replies: int) -> None:
        me = self.aliases[span.service]
        for child in self.kids.get(span.span_id, []):
            if child.service != span.service:
                self.call(span, child, open_replies)
                continue
            kids = self.kids.get(child.span_id, [])
            hidden = _is_client(child) and bool(kids) and all(k.service != child.service for k in kids)
            if hidden:  # the call itself stands for the client span
                before = self.messages
                self.walk(child, open_replies)
                self.drawn += int(self.messages > before)
                continue
            if not self.room(1, open_replies):
                continue
            arrow = "-x" if child.error else "->>"
            text = _span_text(child) + (f" · {_error_text(child)}" if child.error else "")
            self.lines.append(f"    {me}{arrow}{me}: {label(text, 200)}{self.mark(child)}")
            self.messages += 1
            self.drawn += 1
            self.walk(child, open_replies)

    def call(self, caller: SpanDetail, callee: SpanDetail, open_replies: int) -> None:
        if not self.room(2, open_replies):
            return
        a, b = self.aliases[caller.service], self.aliases[callee.service]
        self.lines.append(f"    {a}->>+{b}: {label(clip(callee.name, 80), 200)}{self.mark(callee)}")
        self.messages += 1
        self.drawn += 1
        self.walk(callee, open_replies + 1)
        # A client span can fail on its own (timeout, refused) while its callee looks fine.
        failed = callee if callee.error else caller if caller.error and _is_client(caller) else None
        if failed is not None:
            reply = f"{b}--x-{a}: {label(duration(callee.duration_ns) + ' · ' + _error_text(failed))}"
        else:
            reply = f"{b}-->>-{a}: {label(duration(callee.duration_ns))}"
        self.lines.append(f"    {reply}")
        self.messages += 1

def sequence_diagram(trace: TraceDetail, *, max_messages: int = MAX_MESSAGES,
                     critical: Collection[str] = ()) -> str:
    """A `sequenceDiagram` of `trace`: calls between services with durations, errors as
    crosses. At most `max_messages` arrows (up to 400; a note says how many spans were left out);
    span ids in `critical` (e.g. the critical path) are marked ★."""
    seq = _Sequence(trace, min(max(max_messages, 2), LIMIT), critical)
    errors = sum(1 for s in trace.spans if s.error)
    title = (f"trace {trace.trace_id} · {_count(len(trace.spans), 'span')}, {_count(errors, 'error')}, "
             f"{duration(trace.end_ns - trace.start_ns)}")
    out = ["sequenceDiagram", f"    title {label(title, 200)}"]
    out += [f"    participant {alias} as {label(service or '(no service)', 60)}"
            for service, alias in seq.aliases.items()]
    for root in trace.roots:
        me = seq.aliases[root.service]
        kind = "root" if not root.parent_span_id else f"orphan, parent {root.parent_span_id} not stored"
        text = f"{_span_text(root)} · {kind}" + (f" · {_error_text(root)}" if root.error else "")
        seq.lines.append(f"    Note over {me}: {label(text, 200)}{seq.mark(root)}")
        seq.drawn += 1
        seq.walk(root, 0)
    out += seq.lines
    skipped = len(trace.spans) - seq.drawn
    if skipped:
        first = seq.aliases[trace.spans[0].service]
        note = f"{_count(skipped, 'more span')} not drawn" + (
            f" (limit {seq.max_messages} messages)" if seq.capped else " (not reachable from a root)")
        out.append(f"    Note over {first}: {label(note)}")
    return "\n".join(out) + "\n"


def gantt_diagram(trace: TraceDetail, *, max_tasks: int = MAX_TASKS,
                  critical: Collection[str] = ()) -> str:
    """A `gantt` timeline of `trace`: a section per service (in order of first appearance), a
    bar per span at its offset from the trace's start in ms. Errored spans are `crit` (red),
    spans in `critical` are `active`. At most `max_tasks` bars, the earliest-starting."""
    t0 = trace.start_ns
    total = trace.end_ns - t0
    shown = trace.spans[:min(max(max_tasks, 1), LIMIT)]
    sections: dict[str, list[SpanDetail]] = {}
    for span in trace.spans:
        sections.setdefault(span.service, [])
    for span in shown:
        sections[span.service].append(span)
    title = f"trace {trace.trace_id} ({duration(total)})"
    if len(shown) < len(trace.spans):
        title += f", first {len(shown)} of {len(trace.spans)} spans"
    out = ["gantt", f"    title {label(title, 200)}", "    dateFormat x",
           f"    axisFormat {_axis_format(total)}", "    todayMarker off"]
    index = {s.span_id: i for i, s in enumerate(shown)}
    for service, spans in sections.items():
        if not spans:
            continue
        out.append(f"    section {label(service or '(no service)', 60)}")
        for span in spans:
            start = (span.start_ns - t0) // NS_PER_MS
            # Mermaid dates are whole ms: a sub-ms span still gets a 1 ms bar to be visible.
            end = max(start + 1, -(-(span.end_ns - t0) // NS_PER_MS))
            tags = (["crit"] if span.error else []) + (["active"] if span.span_id in critical else [])
            spec = ", ".join([*tags, f"t{index[span.span_id]}", str(start), str(end)])
            out.append(f"    {line_label(_span_text(span), 160)} :{spec}")
    return "\n".join(out) + "\n"


def phases_gantt(result: Phases, *, max_tasks: int = MAX_TASKS, error_share: float = 0.05) -> str:
    """A `gantt` of a window: a section per service, a bar per phase of each root operation
    (consecutive time buckets with root spans), labelled with traces and errors; phases where
    at least `error_share` of the traces failed are `crit` (red). Times are epoch ms, so the
    axis shows the viewer's wall clock."""
    shown = result.phases[:min(max(max_tasks, 1), LIMIT)]
    title = f"root operations, {_utc(result.start_ns)} to {_utc(result.end_ns)} UTC"
    if len(shown) < len(result.phases):
        title += f", first {len(shown)} of {len(result.phases)} phases"
    out = ["gantt", f"    title {label(title, 200)}", "    dateFormat x",
           f"    axisFormat {_clock_format(result.end_ns - result.start_ns)}", "    todayMarker off"]
    if not shown:
        out += ["    section no root spans in scope", f"    {line_label('nothing to draw')} :p0, 0, 1"]
    service = None
    for i, phase in enumerate(shown):
        if phase.service != service:
            service = phase.service
            out.append(f"    section {label(service or '(no service)', 60)}")
        text = f"{clip(phase.operation, 80)} · {_count(phase.roots, 'trace')}"
        text += f", {_count(phase.errors, 'error')}" if phase.errors else ""
        start = phase.start_ns // NS_PER_MS
        end = max(start + 1, -(-phase.end_ns // NS_PER_MS))
        tags = "crit, " if phase.errors >= error_share * phase.roots and phase.errors else ""
        out.append(f"    {line_label(text, 160)} :{tags}p{i}, {start}, {end}")
    return "\n".join(out) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _clock_format(total_ns: int) -> str:
    """Wall-clock ticks as fine as the range needs (below a minute, milliseconds)."""
    for limit_s, fmt in ((60, "%H:%M:%S.%L"), (7200, "%H:%M:%S"), (2 * 86_400, "%H:%M")):
        if total_ns < limit_s * 1_000_000_000:
            return fmt
    return "%m-%d %H:%M"


def _axis_format(total_ns: int) -> str:
    """d3 time format for offsets from 0: seconds.millis for short traces, else min:sec
    (Mermaid draws the axis in the viewer's time zone; whole-hour zones leave these alone)."""
    return "%S.%L s" if total_ns < 60_000_000_000 else "%M:%S"
