"""Extraction rules: the TOML file that says which log lines carry a duration or a value.

A rule has a name, a pattern (`match`, a template with `{name}` placeholders, or `regex`, with
`(?P<name>...)` groups) and one target: `span` (a duration → a derived span) or `metric` (a
value → a gauge point). See docs/log-extract.md for the format. Everything a rule says is
checked here, so a bad rule fails with one line naming it before anything is read or written;
the engine (RE2) check of the final regex is done by the caller on the store's connection.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Nanoseconds per unit of a captured duration.
UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
# Placeholder kinds (`{name:kind}`): the regex each captures. The default is `word`, or
# `number` for the group a rule reads its duration / value from.
KINDS = {
    "word": r"\S+",
    "number": r"[-+]?[0-9]+(?:\.[0-9]+)?",
    "int": r"[-+]?[0-9]+",
    "hex": r"[0-9a-fA-F]+",
    "any": r".*?",
    "rest": r".*",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}:]*)(?::([^{}]*))?\}")
_RULE_KEYS = {"name", "match", "regex", "span", "metric", "services"}
_SPAN_KEYS = {"name", "duration", "unit", "service", "kind"}
_METRIC_KEYS = {"name", "value", "unit", "attributes", "service"}
SPAN_KINDS = ("Internal", "Server", "Client", "Producer", "Consumer")


class RuleError(ValueError):
    """A rule file or rule that cannot be used (the message names the rule)."""


@dataclass(frozen=True)
class Template:
    """A text built from literal parts and captured groups (`GET {path}`)."""

    parts: tuple[tuple[bool, str], ...]  # (is a group reference, literal text or group name)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(text for is_group, text in self.parts if is_group)


@dataclass(frozen=True)
class SpanTarget:
    name: Template
    duration: str  # the group holding the duration
    unit_ns: int
    service: Template | None  # None: the log record's ServiceName
    kind: str


@dataclass(frozen=True)
class MetricTarget:
    name: Template
    value: str  # the group holding the value
    unit: str
    attributes: tuple[str, ...]  # groups copied to the point's attributes
    service: Template | None


@dataclass(frozen=True)
class Rule:
    name: str
    regex: str  # Python- and RE2-compatible, unanchored (searched anywhere in the Body)
    groups: tuple[str, ...]  # the name of every capture group, in order ('' when unnamed)
    span: SpanTarget | None
    metric: MetricTarget | None
    services: tuple[str, ...] = ()  # only logs of these services (empty: all)

    @property
    def source(self) -> str:
        """The ingest batch source of what this rule derives."""
        return f"extract:{self.name}"

    def fingerprint(self) -> str:
        return repr((self.regex, self.groups, self.span, self.metric, self.services))


def load_rules(path: Path | str) -> list[Rule]:
    """Read and check a rules file (TOML with `[[rule]]` tables)."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{p}: not valid TOML: {exc}") from exc
    return parse_rules(doc, str(p))


def parse_rules(doc: dict[str, Any], where: str = "rules") -> list[Rule]:
    raw = doc.get("rule")
    if not isinstance(raw, list) or not raw:
        raise RuleError(f"{where}: no [[rule]] tables")
    rules = [parse_rule(r, i) for i, r in enumerate(raw, 1)]
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise RuleError(f"rule {r.name!r}: the name is used twice")
        seen.add(r.name)
    return rules


def parse_rule(raw: Any, number: int = 1) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"rule #{number}: must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"rule #{number}: needs a name")
    label = f"rule {name!r}"
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise RuleError(f"{label}: unknown key(s) {', '.join(unknown)}")
    span_raw, metric_raw = raw.get("span"), raw.get("metric")
    if (span_raw is None) == (metric_raw is None):
        raise RuleError(f"{label}: give exactly one of span = {{...}} or metric = {{...}}")
    target_raw = span_raw if span_raw is not None else metric_raw
    if not isinstance(target_raw, dict):
        raise RuleError(f"{label}: span / metric must be a table")
    numeric = target_raw.get("duration" if span_raw is not None else "value")
    if not isinstance(numeric, str) or not numeric:
        what = "span.duration" if span_raw is not None else "metric.value"
        raise RuleError(f"{label}: {what} must name a captured group")
    if ("match" in raw) == ("regex" in raw):
        raise RuleError(f"{label}: give exactly one of match (a template) or regex")
    try:
        if "match" in raw:
            regex, groups = template_regex(_text(raw["match"], label, "match"), numeric)
        else:
            regex, groups = regex_groups(_text(raw["regex"], label, "regex"))
    except (re.error, RuleError) as exc:
        raise RuleError(f"{label}: {exc}") from exc
    known = {g for g in groups if g}
    span = _span(span_raw, label, known) if span_raw is not None else None
    metric = _metric(metric_raw, label, known) if metric_raw is not None else None
    services = raw.get("services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise RuleError(f"{label}: services must be a list of names")
    return Rule(name, regex, groups, span, metric, tuple(services))


def _text(value: Any, label: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise RuleError(f"{label}: {key} must be a non-empty string")
    return value


def template_regex(template: str, numeric: str = "") -> tuple[str, tuple[str, ...]]:
    """A `match` template → (regex, group names). Literal text is escaped; a run of
    whitespace matches any run of whitespace; `{{` and `}}` are literal braces."""
    out: list[str] = []
    groups: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        out.append(_literal(template[pos:m.start()]))
        pos = m.end()
        if m.group(0) in ("{{", "}}"):
            out.append(re.escape(m.group(0)[0]))
            continue
        name, kind = m.group(1).strip(), (m.group(2) or "").strip()
        if not _NAME.fullmatch(name):
            raise RuleError(f"placeholder {{{m.group(1)}}} is not a name (letters, digits, _)")
        if name in groups:
            raise RuleError(f"placeholder {{{name}}} appears twice")
        kind = kind or ("number" if name == numeric else "word")
        if kind not in KINDS:
            raise RuleError(f"placeholder {{{name}:{kind}}}: kind must be one of {', '.join(KINDS)}")
        groups.append(name)
        out.append(f"(?P<{name}>{KINDS[kind]})")
    rest = template[pos:]
    if "{" in rest or "}" in rest:
        raise RuleError("unbalanced brace in match (write {{ or }} for a literal one)")
    out.append(_literal(rest))
    if not groups:
        raise RuleError("match has no {placeholders}")
    regex = "".join(out)
    re.compile(regex)
    return regex, tuple(groups)


def _literal(text: str) -> str:
    return r"\s+".join(re.escape(piece) for piece in re.split(r"\s+", text))


def regex_groups(regex: str) -> tuple[str, tuple[str, ...]]:
    """A `regex` rule → (regex, the name of each capture group in order, '' for unnamed)."""
    compiled = re.compile(regex)
    names = {index: name for name, index in compiled.groupindex.items()}
    if not names:
        raise RuleError("regex has no named groups (?P<name>...)")
    for name in names.values():
        if not _NAME.fullmatch(name):
            raise RuleError(f"group name {name!r} is not a plain name")
    return regex, tuple(names.get(i, "") for i in range(1, compiled.groups + 1))


def parse_template(text: str, known: set[str], label: str, key: str) -> Template:
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        if m.start() > pos:
            parts.append((False, text[pos:m.start()]))
        pos = m.end()
        if m.group(0) in ("{{", "}}"):
            parts.append((False, m.group(0)[0]))
            continue
        name = m.group(1).strip()
        if name not in known:
            raise RuleError(f"{label}: {key} uses {{{name}}}, which the pattern does not capture")
        parts.append((True, name))
    if pos < len(text):
        parts.append((False, text[pos:]))
    if not parts:
        raise RuleError(f"{label}: {key} is empty")
    return Template(tuple(parts))


def _group(value: Any, known: set[str], label: str, key: str) -> str:
    if not isinstance(value, str) or value not in known:
        raise RuleError(f"{label}: {key} = {value!r} is not a group the pattern captures")
    return value


def _check_keys(raw: dict[str, Any], allowed: set[str], label: str, what: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise RuleError(f"{label}: unknown {what} key(s) {', '.join(unknown)}")


def _span(raw: dict[str, Any], label: str, known: set[str]) -> SpanTarget:
    _check_keys(raw, _SPAN_KEYS, label, "span")
    unit = raw.get("unit", "ms")
    if unit not in UNITS:
        raise RuleError(f"{label}: span.unit must be one of {', '.join(UNITS)}")
    kind = raw.get("kind", "Internal")
    if kind not in SPAN_KINDS:
        raise RuleError(f"{label}: span.kind must be one of {', '.join(SPAN_KINDS)}")
    service = raw.get("service")
    return SpanTarget(
        name=parse_template(_text(raw.get("name"), label, "span.name"), known, label, "span.name"),
        duration=_group(raw.get("duration"), known, label, "span.duration"),
        unit_ns=UNITS[unit],
        service=None if service is None else parse_template(
            _text(service, label, "span.service"), known, label, "span.service"),
        kind=kind)


def _metric(raw: dict[str, Any], label: str, known: set[str]) -> MetricTarget:
    _check_keys(raw, _METRIC_KEYS, label, "metric")
    attributes = raw.get("attributes", [])
    if not isinstance(attributes, list):
        raise RuleError(f"{label}: metric.attributes must be a list of group names")
    unit = raw.get("unit", "")
    if not isinstance(unit, str):
        raise RuleError(f"{label}: metric.unit must be a string")
    service = raw.get("service")
    return MetricTarget(
        name=parse_template(_text(raw.get("name"), label, "metric.name"), known, label,
                            "metric.name"),
        value=_group(raw.get("value"), known, label, "metric.value"),
        unit=unit,
        attributes=tuple(_group(a, known, label, "metric.attributes") for a in attributes),
        service=None if service is None else parse_template(
            _text(service, label, "metric.service"), known, label, "metric.service"))
