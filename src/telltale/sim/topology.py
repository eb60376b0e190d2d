"""The simulated system: services, hosts, resources and the request flows between services.

A small web shop (frontend → gateway → catalog / cart / checkout / auth / payment /
recommendation, Postgres, Redis, a Kafka topic consumed by shipping), an AI-agent
orchestrator and a CI runner. Latency medians are the span's own time in ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from telltale.model import SpanKind
from telltale.normalize.staging import ATTRS
from telltale.sim.templates import (
    ChoiceVar,
    Flow,
    IntVar,
    Node,
    cache_call,
    consume,
    db_query,
    grpc_call,
    http_call,
    http_server,
    internal,
    publish,
)

ENVIRONMENT = "production"
HOSTS = ("node-1", "node-2", "node-3")


@dataclass(frozen=True)
class Service:
    name: str
    version: str
    host: str
    language: str
    scope: str


SERVICES: dict[str, Service] = {
    s.name: s
    for s in [
        Service("auth", "3.0.4", "node-1", "java", "io.opentelemetry.spring-webmvc-6.0"),
        Service("cart", "1.1.0", "node-2", "dotnet", "OpenTelemetry.Instrumentation.AspNetCore"),
        Service("catalog", "0.9.7", "node-2", "go",
                "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
        Service("checkout", "1.4.2", "node-2", "java", "io.opentelemetry.spring-webmvc-6.0"),
        Service("ci", "1.0.0", "ci-runner-1", "go", "github.com/telltale/ci-exporter"),
        Service("frontend", "2.3.1", "node-1", "nodejs", "@opentelemetry/instrumentation-http"),
        Service("gateway", "1.12.0", "node-1", "go",
                "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
        Service("orchestrator", "0.7.0", "node-3", "python", "telltale.agents"),
        Service("payment", "2.0.1", "node-2", "python", "opentelemetry.instrumentation.flask"),
        Service("recommendation", "0.4.0", "node-3", "python",
                "opentelemetry.instrumentation.fastapi"),
        Service("shipping", "1.0.3", "node-3", "go", "go.opentelemetry.io/otel/kafka"),
    ]
}

# Attribute keys whose values are not strings in OTLP (writers emit intValue/boolValue...).
INT_KEYS = frozenset({
    "http.response.status_code", "server.port", "rpc.grpc.status_code", "app.order.items",
    "app.payment.amount_cents", "app.cart.quantity", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "ci.job.attempt", "messaging.batch.message_count",
})
BOOL_KEYS = frozenset({"app.cache.hit"})
DOUBLE_KEYS = frozenset({"gen_ai.request.temperature"})


class Resources:
    """Every resource the simulation emits, by index; spans, logs and metrics refer to these."""

    def __init__(self, new_versions: dict[str, str]) -> None:
        self.attrs: list[dict[str, str]] = []
        self.service: list[str] = []
        self.scope: list[tuple[str, str]] = []
        self._index: dict[tuple[str, str], int] = {}
        for svc in SERVICES.values():
            for version in (svc.version, new_versions.get(svc.name)):
                if version is not None:
                    self._add((svc.name, version), svc.name, _service_attrs(svc, version),
                              (svc.scope, "1.0.0"))
        for host in HOSTS:
            attrs = {"host.name": host, "os.type": "linux", "host.arch": "amd64"}
            self._add(("", host), "", attrs, ("otelcol/hostmetricsreceiver", "0.110.0"))
        names = sorted(set(self.service))
        self.service_rank: npt.NDArray[np.int64] = np.array(
            [names.index(s) for s in self.service], dtype=np.int64
        )

    def _add(self, key: tuple[str, str], service: str, attrs: dict[str, str],
             scope: tuple[str, str]) -> None:
        self._index[key] = len(self.attrs)
        self.attrs.append(attrs)
        self.service.append(service)
        self.scope.append(scope)

    def of_service(self, service: str, version: str | None = None) -> int:
        return self._index[(service, version or SERVICES[service].version)]

    def of_host(self, host: str) -> int:
        return self._index[("", host)]

    def lookup(self, services: pa.Array, versions: pa.Array) -> npt.NDArray[np.int64]:
        """Resource index of each (service, service.version) row."""
        keys = pc.binary_join_element_wise(services, pc.fill_null(versions, ""), "\x00")
        encoded = keys.combine_chunks().dictionary_encode() if isinstance(
            keys, pa.ChunkedArray) else keys.dictionary_encode()
        index = np.zeros(len(encoded.dictionary), dtype=np.int64)
        for i, key in enumerate(encoded.dictionary.to_pylist()):
            service, version = key.split("\x00")
            index[i] = self._index[(service, version)]
        out: npt.NDArray[np.int64] = index[np.asarray(encoded.indices)]
        return out

    def maps(self) -> pa.Array:
        return pa.array([sorted(a.items()) for a in self.attrs], ATTRS)

    def service_names(self) -> pa.Array:
        return pa.array(self.service, pa.string())

    def scope_names(self) -> pa.Array:
        return pa.array([s[0] for s in self.scope], pa.string())

    def scope_versions(self) -> pa.Array:
        return pa.array([s[1] for s in self.scope], pa.string())


def _service_attrs(svc: Service, version: str) -> dict[str, str]:
    return {
        "service.name": svc.name, "service.version": version,
        "service.namespace": "shop", "deployment.environment": ENVIRONMENT,
        "deployment.environment.name": ENVIRONMENT, "host.name": svc.host,
        "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": svc.language,
        "telemetry.sdk.version": "1.29.0",
    }


# -- request flows ---------------------------------------------------------------------------

PROVIDERS = ("acme-pay", "globex-pay", "initech-pay")
_PRODUCT = IntVar(1, 4000)
_USER = IntVar(1, 60_000)
_CACHE = ChoiceVar(("true", "false"), (0.7, 0.3))


def _recommendations() -> Node:
    server = http_server(
        "recommendation", "GET", "/recommendations", "/recommendations", 14.0,
        internal("recommendation", "load candidates", 3.0,
                 cache_call("recommendation", "GET", "reco:{product}")),
        internal("recommendation", "rank candidates", 9.0, attrs={"app.model.name": "ranker-v3"}),
        p_error=0.002, error_type="TimeoutError", error_message="ranking model timed out",
    )
    return http_call("frontend", server, absorbs=True)  # best effort: the page renders anyway


def _product_lookup(path: str, route: str) -> Node:
    return http_server(
        "catalog", "GET", route, path, 4.0,
        cache_call("catalog", "GET", "product:{product}", attrs_hit=True),
        db_query("catalog", "SELECT", "products",
                 "SELECT id, name, price, stock FROM products WHERE id = $1", 3.5,
                 when=("cache_hit", "false")),
        cache_call("catalog", "SET", "product:{product}", when=("cache_hit", "false")),
    )


def _auth_verify(caller: str) -> Node:
    return grpc_call(caller, "auth", "auth.AuthService", "Verify", 1.5,
                     cache_call("auth", "GET", "session:{user}"))


def flows() -> list[Flow]:
    browse = http_server(
        "frontend", "GET", "/", "/", 6.0,
        http_call("frontend", http_server(
            "gateway", "GET", "/api/products", "/api/products", 1.5,
            http_call("gateway", http_server(
                "catalog", "GET", "/products", "/products?featured=true", 5.0,
                cache_call("catalog", "GET", "products:featured", attrs_hit=True),
                db_query("catalog", "SELECT", "products",
                         "SELECT id, name, price FROM products WHERE featured ORDER BY rank"
                         " LIMIT 24", 6.0, when=("cache_hit", "false")),
            )),
        )),
        _recommendations(),
        parallel=True,
    )
    product = http_server(
        "frontend", "GET", "/product/{id}", "/product/{product}", 5.0,
        http_call("frontend", http_server(
            "gateway", "GET", "/api/products/{id}", "/api/products/{product}", 1.5,
            http_call("gateway", _product_lookup("/products/{product}", "/products/{id}")),
        )),
        _recommendations(),
        parallel=True,
    )
    cart = http_server(
        "frontend", "POST", "/cart", "/cart", 4.0,
        http_call("frontend", http_server(
            "gateway", "POST", "/api/cart", "/api/cart", 1.5,
            _auth_verify("gateway"),
            http_call("gateway", http_server(
                "cart", "POST", "/cart/items", "/cart/items", 3.0,
                internal("cart", "validate item", 1.2,
                         attrs={"app.product.id": "{product}", "app.cart.quantity": "{qty}"}),
                cache_call("cart", "HSET", "cart:{user}"),
            )),
        )),
    )
    checkout = http_server(
        "frontend", "POST", "/checkout", "/checkout", 5.0,
        http_call("frontend", http_server(
            "gateway", "POST", "/api/checkout", "/api/checkout", 1.5,
            _auth_verify("gateway"),
            http_call("gateway", _checkout()),
        )),
    )
    login = http_server(
        "frontend", "POST", "/login", "/login", 4.0,
        http_call("frontend", http_server(
            "gateway", "POST", "/api/login", "/api/login", 1.5,
            http_call("gateway", http_server(
                "auth", "POST", "/auth/login", "/auth/login", 3.0,
                db_query("auth", "SELECT", "users",
                         "SELECT id, password_hash FROM users WHERE email = $1", 2.0),
                internal("auth", "verify password hash", 45.0, sigma=0.15),
                cache_call("auth", "SET", "session:{user}"),
            )),
        )),
    )
    search = http_server(
        "frontend", "GET", "/search", "/search?q={term}", 4.0,
        http_call("frontend", http_server(
            "gateway", "GET", "/api/search", "/api/search?q={term}", 1.5,
            http_call("gateway", http_server(
                "catalog", "GET", "/products/search", "/products/search?q={term}", 3.0,
                db_query("catalog", "SELECT", "products",
                         "SELECT id, name FROM products WHERE name ILIKE $1 LIMIT 50", 22.0,
                         sigma=0.8),
            )),
        )),
    )
    terms = ChoiceVar(("shoes", "lamp", "coffee", "socks", "backpack", "kettle"),
                      (0.25, 0.15, 0.2, 0.15, 0.15, 0.1))
    return [
        Flow("browse", 0.28, {"product": _PRODUCT, "cache_hit": _CACHE}, browse),
        Flow("product", 0.30, {"product": _PRODUCT, "cache_hit": _CACHE}, product),
        Flow("cart", 0.14, {"product": _PRODUCT, "user": _USER, "qty": IntVar(1, 5)}, cart),
        Flow("checkout", 0.08, {
            "user": _USER, "items": IntVar(1, 8), "amount": IntVar(499, 45_000),
            "order": IntVar(100_000, 999_999),
            "provider": ChoiceVar(PROVIDERS, (0.4, 0.35, 0.25)),
        }, checkout),
        Flow("login", 0.07, {"user": _USER}, login),
        Flow("search", 0.13, {"term": terms}, search),
    ]


def _checkout() -> Node:
    provider_call = Node(
        "POST", "payment", SpanKind.CLIENT,
        {"http.request.method": "POST", "url.full": "https://api.{provider}.example/v1/charges",
         "server.address": "api.{provider}.example", "server.port": "443",
         "http.response.status_code": "{status}", "app.payment.provider": "{provider}"},
        22.0, sigma=0.5, p_error=0.002, error_code=502, error_type="ProviderError",
        error_message="{provider}: upstream error", burst_target=True,
    )
    payment = http_server(
        "payment", "POST", "/charge", "/charge", 3.0,
        provider_call,
        db_query("payment", "INSERT", "payments",
                 "INSERT INTO payments (order_id, provider, amount) VALUES ($1, $2, $3)", 2.5),
        extra_attrs={"app.payment.provider": "{provider}", "app.payment.amount_cents": "{amount}"},
    )
    shipping = consume(
        "shipping", "orders", 6.0,
        db_query("shipping", "INSERT", "shipments",
                 "INSERT INTO shipments (order_id, carrier) VALUES ($1, $2)", 3.0),
        internal("shipping", "allocate carrier", 2.0, attrs={"app.order.id": "{order}"}),
    )
    return http_server(
        "checkout", "POST", "/checkout", "/checkout", 30.0,
        http_call("checkout", http_server(
            "cart", "GET", "/cart/{id}", "/cart/{user}", 2.0,
            cache_call("cart", "HGETALL", "cart:{user}"),
        )),
        internal("checkout", "compute order total", 8.0, attrs={"app.order.items": "{items}"}),
        http_call("checkout", payment),
        db_query("checkout", "INSERT", "orders",
                 "INSERT INTO orders (id, user_id, total) VALUES ($1, $2, $3)", 4.0),
        publish("checkout", "orders", shipping),
        extra_attrs={"app.order.id": "{order}", "enduser.id": "{user}"},
    )
