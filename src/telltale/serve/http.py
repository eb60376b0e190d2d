"""OTLP/HTTP (`/v1/traces|logs|metrics`) and the receiver's operational endpoints (Starlette).

Status codes follow the OTLP/HTTP specification: 200 with `partial_success` when some records
were quarantined, 400 (not retryable) with a `google.rpc.Status` body when the body cannot be
decoded, 413 above the request cap, 415 for other content types, 429 / 503 with `Retry-After`
when the queue is full or the store is failing (both retryable).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from google.rpc import code_pb2, status_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from telltale.model import Signal
from telltale.serve.committer import Job, ShuttingDownError
from telltale.serve.decode import JSON, PROTOBUF, encode, response
from telltale.serve.receiver import (
    RETRY_AFTER_SECONDS,
    BadEncoding,
    Overloaded,
    Receiver,
    TooLarge,
)

TRANSPORT = "otlp-http"
OPEN_PATHS = {"/healthz"}


def _status(code: int, message: str, content_type: str, http_status: int,
            headers: dict[str, str] | None = None) -> Response:
    body = encode(status_pb2.Status(code=code, message=message), content_type)
    return Response(body, status_code=http_status, media_type=content_type, headers=headers)


def _content_type(request: Request) -> str | None:
    value = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return value if value in (PROTOBUF, JSON) else None


def export_endpoint(receiver: Receiver, signal: Signal) -> Callable[[Request], Awaitable[Response]]:
    async def export(request: Request) -> Response:
        ctype = _content_type(request)
        if ctype is None:
            receiver.stats.count_request(TRANSPORT, signal, "unsupported_media_type")
            return PlainTextResponse("Content-Type must be application/x-protobuf or "
                                     "application/json", status_code=415)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        try:
            body, reserved = await receiver.read_body(request.stream(), encoding)
        except TooLarge:
            receiver.stats.count_request(TRANSPORT, signal, "too_large")
            return _status(code_pb2.RESOURCE_EXHAUSTED,
                           f"request larger than {receiver.max_request_bytes} bytes "
                           "(after decompression)", ctype, 413)
        except Overloaded:
            receiver.stats.count_request(TRANSPORT, signal, "overloaded")
            return _status(code_pb2.UNAVAILABLE, "receiver queue is full, retry later", ctype,
                           429, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except BadEncoding as exc:
            receiver.stats.count_request(TRANSPORT, signal, "bad_request")
            return _status(code_pb2.INVALID_ARGUMENT, str(exc), ctype, 400)
        future = receiver.submit(signal, body, ctype, TRANSPORT, reserved)
        try:
            result = await asyncio.wrap_future(future)
        except ShuttingDownError as exc:
            receiver.stats.count_request(TRANSPORT, signal, "unavailable")
            return _status(code_pb2.UNAVAILABLE, str(exc), ctype, 503,
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except Exception as exc:  # the store could not commit: nothing was kept, retry
            receiver.stats.count_request(TRANSPORT, signal, "unavailable")
            return _status(code_pb2.UNAVAILABLE, f"store error: {exc}".splitlines()[0], ctype,
                           503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        if result.undecodable is not None:
            receiver.stats.count_request(TRANSPORT, signal, "bad_request")
            return _status(code_pb2.INVALID_ARGUMENT, result.undecodable, ctype, 400)
        receiver.stats.count_request(TRANSPORT, signal,
                                     "partial" if result.rejected else "ok")
        return Response(encode(response(signal, result), ctype), media_type=ctype)
    return export


def operational_routes(receiver: Receiver) -> list[Route]:
    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        """Ready when the committer runs and the store answers within two seconds."""
        job = Job(reserved=0, task=lambda store: store.query("SELECT 1"))
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.wrap_future(receiver.committer.submit(job)), 2.0)
        except Exception as exc:
            return JSONResponse({"ready": False, "reason": str(exc) or type(exc).__name__},
                                status_code=503)
        if not receiver.committer.healthy:
            return JSONResponse({"ready": False, "reason": "the last commit failed"},
                                status_code=503)
        return JSONResponse({"ready": True, "queue_depth": receiver.committer.depth,
                             "store_ms": round((time.perf_counter() - started) * 1000, 2)})

    async def metrics(_: Request) -> Response:
        return Response(receiver.stats.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


class BearerAuth:
    """Every path but liveness needs the token when one is set (ASGI middleware)."""

    def __init__(self, app: ASGIApp, receiver: Receiver) -> None:
        self.app = app
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            value = headers.get(b"authorization")
            if not self.receiver.authorized(value.decode("latin-1") if value else None):
                reply = PlainTextResponse("missing or wrong bearer token", status_code=401,
                                          headers={"WWW-Authenticate": "Bearer"})
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(receiver: Receiver, extra_routes: list[Route] | None = None) -> ASGIApp:
    routes = [Route(f"/v1/{signal.value}", export_endpoint(receiver, signal), methods=["POST"])
              for signal in Signal]
    app = Starlette(routes=routes + operational_routes(receiver) + (extra_routes or []))
    return BearerAuth(app, receiver)
