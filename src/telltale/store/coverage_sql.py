"""SQL for handler coverage: spans in the window matched to the handlers found in the code.

Handlers arrive as a bound list of structs `$handlers` (hid, route as declared, methods,
func: qualified function name). Spans are reduced to their distinct match keys first
(service, method, raw route, code function, span name), so the key × handler comparison is
small; call counts, errors and p95 then come from joining the spans back by key.

Route templates are normalised to one form by `route_norm` (used for both sides, so the code's
`/users/<int:id>` and the span's `/users/{id}` or `/users/:id` meet as `/users/{}`). Function
names match when one is the other or a dot-suffix of it (`app.users.get` ~ `users.get`).
"""

from __future__ import annotations

from typing import Any

from telltale.analyses.scope import Scope
from telltale.model import SpanKind
from telltale.store.scope_sql import is_error, is_kind, span_filter

# Applied in order; each is (RE2 pattern, replacement).
_ROUTE_STEPS = [
    (r"\(\?P<[^>]+>[^)]*\)", "{}"),  # Django re_path named groups
    (r"^\^|\$$", ""),  # regex anchors
    (r"\{[^}]*\}", "{}"),  # {id}, {id:int}, {id:[0-9]+}, {path...}
    (r"<[^>]*>", "{}"),  # Flask / Django <int:id>
    (r"(^|/):[A-Za-z_][A-Za-z0-9_]*(\([^)]*\))?\??", r"\1{}"),  # Express / Rails :id
    (r"(^|/)\*+", r"\1{}"),  # wildcard segments
    (r"[?#].*$", ""),  # a query string or fragment is not part of the route
    (r"//+", "/"),
    (r"^([^/])", r"/\1"),  # Django writes routes without the leading slash
    (r"(.)/$", r"\1"),  # /users/ and /users are one route
]


def route_norm(expr: str) -> str:
    """SQL normalising the route template `expr` ('' stays '', NULL stays NULL)."""
    out = expr
    for pattern, replacement in _ROUTE_STEPS:
        out = f"regexp_replace({out}, '{pattern}', '{replacement}', 'g')"
    return out


_CODE_FUNCTION = """CASE
    WHEN coalesce(SpanAttributes['code.function.name'], SpanAttributes['code.function'], '') = ''
        THEN ''
    ELSE regexp_replace(CASE
        WHEN coalesce(SpanAttributes['code.namespace'], '') <> ''
            AND NOT starts_with(coalesce(SpanAttributes['code.function.name'],
                                         SpanAttributes['code.function']),
                                SpanAttributes['code.namespace'] || '.')
        THEN SpanAttributes['code.namespace'] || '.'
        ELSE '' END
        || coalesce(SpanAttributes['code.function.name'], SpanAttributes['code.function']),
        '::|#|:|/', '.', 'g')
END"""


def _func_match(span_side: str, handler_side: str) -> str:
    return (f"({span_side} = {handler_side} OR ends_with({handler_side}, '.' || {span_side})"
            f" OR ends_with({span_side}, '.' || {handler_side}))")


# {scope}: the window and filters on the spans; {client} excludes outgoing calls from taking
# their name for a route (only servers handle routes).
COVERAGE = """
WITH h AS (SELECT unnest($handlers, recursive := true)),
hn AS (SELECT hid, {handler_route} AS route, methods, func FROM h),
s AS MATERIALIZED (
    SELECT ServiceName AS svc, Duration AS dur, {error} AS err,
        upper(coalesce(nullif(SpanAttributes['http.request.method'], ''),
                       nullif(SpanAttributes['http.method'], ''),
                       nullif(regexp_extract(SpanName, '^([A-Za-z]+) /', 1), ''), '')) AS method,
        coalesce(nullif(SpanAttributes['http.route'], ''), CASE WHEN NOT {client}
            THEN nullif(regexp_extract(SpanName, '^(?:[A-Za-z]+ +)?(/\\S*)$', 1), '') END, '')
            AS route_raw,
        {code_function} AS func,
        CASE WHEN regexp_full_match(SpanName, '[A-Za-z_][A-Za-z0-9_]*([.:]+[A-Za-z_][A-Za-z0-9_]*)*')
            THEN SpanName ELSE '' END AS sname
    FROM otel_traces WHERE {scope}
),
keys AS (
    SELECT k.*, {span_route} AS route
    FROM (SELECT DISTINCT svc, method, route_raw, func, sname FROM s) k
),
km AS MATERIALIZED (
    SELECT DISTINCT k.svc, k.method, k.route_raw, k.func, k.sname, hn.hid
    FROM keys k JOIN hn ON
        (hn.route <> '' AND k.route = hn.route
            AND (len(hn.methods) = 0 OR k.method = '' OR list_contains(hn.methods, k.method)))
        OR (hn.func <> '' AND k.func <> '' AND {func_match})
        OR (hn.func <> '' AND k.sname <> '' AND {name_match})
),
known AS (SELECT DISTINCT svc, method, route_raw, func, sname FROM km)
SELECT 'handler' AS part, km.hid, NULL AS svc, NULL AS kind, NULL AS method, NULL AS key,
    count(*) AS calls, count(*) FILTER (WHERE s.err) AS errors,
    quantile_cont(s.dur, 0.95) / 1e6 AS p95_ms, list(DISTINCT s.svc ORDER BY s.svc) AS services
FROM s JOIN km USING (svc, method, route_raw, func, sname) GROUP BY km.hid
UNION ALL
SELECT 'unknown', NULL, s.svc, CASE WHEN k.route <> '' THEN 'route' ELSE 'function' END,
    CASE WHEN k.route <> '' THEN s.method ELSE '' END,
    CASE WHEN k.route <> '' THEN k.route ELSE s.func END,
    count(*), count(*) FILTER (WHERE s.err), quantile_cont(s.dur, 0.95) / 1e6, NULL
FROM s JOIN keys k USING (svc, method, route_raw, func, sname)
    ANTI JOIN known USING (svc, method, route_raw, func, sname)
WHERE k.route <> '' OR s.func <> ''
GROUP BY ALL
UNION ALL
SELECT 'totals', NULL, NULL, NULL, NULL, NULL, count(*), count(*) FILTER (WHERE func <> ''),
    NULL, NULL
FROM s
"""

# The handlers' routes as coverage compares them.
HANDLER_ROUTES = """
SELECT hid, {handler_route} FROM (SELECT unnest($handlers, recursive := true)) ORDER BY hid
"""


def fetch(con: Any, scope: Scope, handlers: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows of (part, hid, service, kind, method, key, calls, errors, p95_ms, services):
    part 'handler' per exercised handler, 'unknown' per route / function no handler matched,
    and one 'totals' row (calls = spans in scope, errors = spans naming a code function)."""
    where, params = span_filter(scope)
    client = f"({is_kind(SpanKind.CLIENT.value)} OR {is_kind(SpanKind.PRODUCER.value)})"
    sql = (COVERAGE.replace("{handler_route}", route_norm("h.route"))
           .replace("{span_route}", route_norm("k.route_raw"))
           .replace("{code_function}", _CODE_FUNCTION)
           .replace("{func_match}", _func_match("k.func", "hn.func"))
           .replace("{name_match}", _func_match("k.sname", "hn.func"))
           .replace("{error}", is_error())
           .replace("{client}", client)
           .replace("{scope}", where))
    out: list[tuple[Any, ...]] = con.execute(sql, {**params, "handlers": handlers}).fetchall()
    return out


def handler_routes(con: Any, handlers: list[dict[str, Any]]) -> dict[int, str]:
    sql = HANDLER_ROUTES.replace("{handler_route}", route_norm("route"))
    return {int(hid): str(route) for hid, route in con.execute(sql, {"handlers": handlers}).fetchall()}
