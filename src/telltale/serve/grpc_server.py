"""OTLP/gRPC: the three collector `Export` services, with the HTTP side's semantics.

Handlers take the raw request bytes (no deserializer), so protobuf traces reach ptars without
a parse/serialize round trip through Python objects. Codes: INVALID_ARGUMENT for undecodable
requests, UNAVAILABLE with `RetryInfo` when the queue is full or the store fails (retryable),
RESOURCE_EXHAUSTED above the request cap (gRPC's own message-size check), UNAUTHENTICATED
without the token.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from telltale.model import Signal
from telltale.serve.committer import ShuttingDownError
from telltale.serve.decode import PROTOBUF, response
from telltale.serve.receiver import RETRY_AFTER_SECONDS, Overloaded, Receiver

TRANSPORT = "otlp-grpc"
_SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def _abort_unavailable(context: grpc.ServicerContext, message: str) -> None:
    retry = any_pb2.Any()
    retry.Pack(error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_SECONDS)))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[retry])
    context.abort_with_status(rpc_status.to_status(status))


def _handler(receiver: Receiver, signal: Signal) -> Callable[[bytes, grpc.ServicerContext], Message]:
    def export(body: bytes, context: grpc.ServicerContext) -> Message:
        auth = dict(context.invocation_metadata()).get("authorization")
        if not receiver.authorized(auth if isinstance(auth, str) else None):
            receiver.stats.count_request(TRANSPORT, signal, "unauthorized")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            receiver.reserve(len(body))
        except Overloaded:
            receiver.stats.count_request(TRANSPORT, signal, "overloaded")
            _abort_unavailable(context, "receiver queue is full, retry later")
        future = receiver.submit(signal, body, PROTOBUF, TRANSPORT, len(body))
        try:
            result = future.result()
        except ShuttingDownError as exc:
            receiver.stats.count_request(TRANSPORT, signal, "unavailable")
            _abort_unavailable(context, str(exc))
            raise  # unreachable: abort raises
        except Exception as exc:
            receiver.stats.count_request(TRANSPORT, signal, "unavailable")
            _abort_unavailable(context, f"store error: {exc}".splitlines()[0])
            raise
        if result.undecodable is not None:
            receiver.stats.count_request(TRANSPORT, signal, "bad_request")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, result.undecodable)
        receiver.stats.count_request(TRANSPORT, signal, "partial" if result.rejected else "ok")
        return response(signal, result)
    return export


def start_grpc(receiver: Receiver, host: str, port: int, workers: int = 16) -> tuple[grpc.Server, int]:
    """Start the gRPC server; returns it and the bound port (0 picks a free one).

    gRPC reads a whole message before the handler can reserve it from the byte budget, so at
    most `workers` calls run at once (more get RESOURCE_EXHAUSTED, which clients retry): memory
    outside the budget stays below workers × the request cap."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", receiver.max_request_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="telltale-grpc"),
                         options=options, maximum_concurrent_rpcs=workers)
    for signal, service in _SERVICES.items():
        method: grpc.RpcMethodHandler[bytes, Message] = grpc.unary_unary_rpc_method_handler(
            _handler(receiver, signal), request_deserializer=None,
            response_serializer=lambda m: m.SerializeToString())
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            service, {"Export": method}),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
