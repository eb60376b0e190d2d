"""A `Scope` as a bound SQL filter over `otel_traces` (values are parameters, never text)."""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope


def span_filter(scope: Scope, alias: str = "", prefix: str = "sc") -> tuple[str, dict[str, Any]]:
    """(SQL boolean expression, its named parameters). `alias` qualifies the columns (`t.`);
    `prefix` keeps parameter names apart when two scopes meet in one query (baseline vs now)."""
    col = f"{alias}." if alias else ""
    clauses = ["true"]
    params: dict[str, Any] = {}
    if scope.since is not None:
        clauses.append(f"{col}Timestamp >= ${prefix}_since")
        params[f"{prefix}_since"] = scope.since
    if scope.until is not None:
        clauses.append(f"{col}Timestamp < ${prefix}_until")
        params[f"{prefix}_until"] = scope.until
    if scope.services:
        clauses.append(f"list_contains(${prefix}_services, {col}ServiceName)")
        params[f"{prefix}_services"] = list(scope.services)
    if scope.operations:
        clauses.append(f"list_contains(${prefix}_operations, {col}SpanName)")
        params[f"{prefix}_operations"] = list(scope.operations)
    return " AND ".join(clauses), params


def is_error(alias: str = "") -> str:
    """Error status in either spelling the exporter has used (`Error`, `STATUS_CODE_ERROR`)."""
    col = f"{alias}." if alias else ""
    return f"({col}StatusCode IN ('Error', 'STATUS_CODE_ERROR'))"


def is_kind(kind: str, alias: str = "") -> str:
    """Span kind in either spelling (`Server`, `SPAN_KIND_SERVER`); `kind` is a SpanKind value."""
    col = f"{alias}." if alias else ""
    return f"({col}SpanKind IN ('{kind}', 'SPAN_KIND_{kind.upper()}'))"
