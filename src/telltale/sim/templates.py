"""Request templates: each flow is a tree of span templates instantiated once per request.

A template node carries what every instance shares (service, name, kind, attribute templates,
latency and error behaviour); per-request variables (product id, payment provider, cache hit)
fill the `{placeholders}`. The trace generator walks a flow's nodes a handful of times with
numpy arrays over all requests, so the cost is per node, not per span.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telltale.model import SpanKind

STATUS = "{status}"  # filled per span: ok_code, or error_code when the span failed


@dataclass(frozen=True)
class IntVar:
    """A uniformly drawn integer in [lo, hi]."""

    lo: int
    hi: int


@dataclass(frozen=True)
class ChoiceVar:
    """One of `values`, drawn with `weights`."""

    values: tuple[str, ...]
    weights: tuple[float, ...]


Var = IntVar | ChoiceVar


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    service: str
    kind: SpanKind
    attrs: Mapping[str, str]
    median_ms: float  # self time: the span's duration minus its synchronous children
    sigma: float = 0.45
    p: float = 1.0  # probability of existing when the parent exists
    when: tuple[str, str] | None = None  # exists only when var == value
    p_error: float = 0.0008
    ok_code: int = 200
    error_code: int = 500
    error_type: str = "InternalServerError"
    error_message: str = "unexpected error while handling the request"
    absorbs: bool = False  # a failure here does not fail the caller (best-effort call)
    parallel: bool = False  # children run concurrently instead of one after another
    async_link: bool = False  # a queue consumer: new trace, linked to its producer
    burst_target: bool = False  # subject to the error-burst incident
    children: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Flow:
    name: str
    weight: float
    variables: Mapping[str, Var]
    root: Node


@dataclass(frozen=True)
class FlatNode:
    node: Node
    parent: int  # -1 for the root
    children: tuple[int, ...] = field(default=())


def flatten(root: Node) -> list[FlatNode]:
    """Pre-order list (parents before children) with parent and child indices."""
    out: list[FlatNode] = []

    def visit(node: Node, parent: int) -> int:
        index = len(out)
        out.append(FlatNode(node, parent))
        kids = tuple(visit(child, index) for child in node.children)
        out[index] = FlatNode(node, parent, kids)
        return index

    visit(root, -1)
    return out


# -- builders for the common span shapes (semantic-convention attributes) ------------------


def http_server(service: str, method: str, route: str, path: str, median_ms: float,
                *children: Node, extra_attrs: Mapping[str, str] | None = None,
                **opts: Any) -> Node:
    attrs = {
        "http.request.method": method, "http.route": route, "url.path": path,
        "url.scheme": "http", "server.address": service, "server.port": "8080",
        "http.response.status_code": STATUS, **(extra_attrs or {}),
    }
    return Node(f"{method} {route}", service, SpanKind.SERVER, attrs, median_ms,
                children=children, **opts)


def http_call(caller: str, server: Node, median_ms: float = 0.9, **opts: Any) -> Node:
    """A client span in `caller` wrapping the server span it reaches."""
    method = server.attrs["http.request.method"]
    attrs = {
        "http.request.method": method,
        "url.full": f"http://{server.service}:8080{server.attrs['url.path']}",
        "server.address": server.service, "server.port": "8080", "net.peer.name": server.service,
        "http.response.status_code": STATUS,
    }
    return Node(method, caller, SpanKind.CLIENT, attrs, median_ms, sigma=0.3, p_error=0.0003,
                children=(server,), **opts)


def grpc_call(caller: str, service: str, rpc_service: str, method: str, median_ms: float,
              *children: Node) -> Node:
    rpc = {"rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": method,
           "rpc.grpc.status_code": STATUS}
    name = f"{rpc_service}/{method}"
    server = Node(name, service, SpanKind.SERVER, {**rpc, "server.address": service},
                  median_ms, ok_code=0, error_code=14, error_type="UNAVAILABLE",
                  error_message="upstream connect error", children=children)
    return Node(name, caller, SpanKind.CLIENT,
                {**rpc, "server.address": service, "server.port": "50051",
                 "net.peer.name": service},
                0.6, sigma=0.3, ok_code=0, error_code=14, p_error=0.0003, children=(server,))


def db_query(service: str, operation: str, table: str, query: str, median_ms: float,
             **opts: Any) -> Node:
    attrs = {
        "db.system": "postgresql", "db.namespace": "shop", "db.operation.name": operation,
        "db.collection.name": table, "db.query.text": query,
        "server.address": "postgres-primary", "server.port": "5432",
        "net.peer.name": "postgres-primary",
    }
    defaults: dict[str, Any] = {
        "sigma": 0.6, "p_error": 0.0005, "error_type": "psycopg.errors.QueryCanceled",
        "error_message": "canceling statement due to statement timeout",
    }
    return Node(f"{operation} shop.{table}", service, SpanKind.CLIENT, attrs, median_ms,
                **{**defaults, **opts})


def cache_call(service: str, operation: str, key: str, median_ms: float = 0.4,
               attrs_hit: bool = False, **opts: Any) -> Node:
    attrs = {
        "db.system": "redis", "db.operation.name": operation,
        "db.query.text": f"{operation} {key}", "server.address": "redis",
        "server.port": "6379", "net.peer.name": "redis",
    }
    if attrs_hit:
        attrs["app.cache.hit"] = "{cache_hit}"
    return Node(operation, service, SpanKind.CLIENT, attrs, median_ms, sigma=0.35,
                p_error=0.0002, error_type="redis.exceptions.TimeoutError",
                error_message="Timeout reading from socket", **opts)


def publish(service: str, destination: str, *consumers: Node) -> Node:
    attrs = {
        "messaging.system": "kafka", "messaging.destination.name": destination,
        "messaging.operation.type": "publish", "server.address": "kafka-0",
        "net.peer.name": "kafka-0",
    }
    return Node(f"publish {destination}", service, SpanKind.PRODUCER, attrs, 1.5, sigma=0.4,
                p_error=0.0002, children=consumers)


def consume(service: str, destination: str, median_ms: float, *children: Node) -> Node:
    attrs = {
        "messaging.system": "kafka", "messaging.destination.name": destination,
        "messaging.operation.type": "process", "messaging.consumer.group.name": service,
    }
    return Node(f"process {destination}", service, SpanKind.CONSUMER, attrs, median_ms,
                async_link=True, children=children)


def internal(service: str, name: str, median_ms: float, *children: Node,
             attrs: Mapping[str, str] | None = None, **opts: Any) -> Node:
    return Node(name, service, SpanKind.INTERNAL, dict(attrs or {}), median_ms,
                children=children, **opts)
