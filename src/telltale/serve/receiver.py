"""What the HTTP and gRPC front ends share: limits, the committer, auth and body handling."""

from __future__ import annotations

import hmac
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass

from telltale.model import Signal
from telltale.serve.committer import ByteBudget, Committer, Job
from telltale.serve.decode import Part, PartResult
from telltale.serve.stats import ReceiverStats

DEFAULT_MAX_REQUEST_BYTES = 64 << 20
DEFAULT_QUEUE_BYTES = 256 << 20
RETRY_AFTER_SECONDS = 1


class TooLarge(Exception):
    """The body (after decompression) exceeds the request cap."""


class Overloaded(Exception):
    """The byte budget is spent: the client should retry later."""


class BadEncoding(Exception):
    """The body's Content-Encoding is unknown or its compressed data is corrupt."""


@dataclass
class Receiver:
    committer: Committer
    budget: ByteBudget
    stats: ReceiverStats
    token: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    def authorized(self, header: str | None) -> bool:
        """`Authorization: Bearer <token>` when a token is set; compared in constant time."""
        if self.token is None:
            return True
        expected = f"Bearer {self.token}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def reserve(self, n: int) -> None:
        if not self.budget.try_acquire(n):
            raise Overloaded()
        self.stats.queue_bytes.set(self.budget.used)

    def release(self, n: int) -> None:
        self.budget.release(n)
        self.stats.queue_bytes.set(self.budget.used)

    async def read_body(self, chunks: AsyncIterator[bytes], encoding: str) -> tuple[bytes, int]:
        """Read and decompress a body within the cap and the budget.

        Returns (body, bytes reserved); the caller hands the reservation to the committer, or
        releases it on error (this method releases what it holds when it raises)."""
        if encoding not in ("", "identity", "gzip"):
            raise BadEncoding(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
        reserved = 0
        raw = bytearray()
        try:
            async for chunk in chunks:
                if len(raw) + len(chunk) > self.max_request_bytes:
                    raise TooLarge()
                self.reserve(len(chunk))
                reserved += len(chunk)
                raw += chunk
            if encoding != "gzip":
                return bytes(raw), reserved
            body, extra = self._gunzip(bytes(raw))
            reserved += extra
            return body, reserved
        except BaseException:
            self.release(reserved)
            raise

    def _gunzip(self, data: bytes) -> tuple[bytes, int]:
        """Decompress at most the cap (a small bomb cannot blow up memory), reserving as it
        grows; returns the body and the extra bytes reserved."""
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = bytearray()
        extra = 0
        try:
            while data:
                piece = d.decompress(data, 1 << 20)
                data = d.unconsumed_tail
                if len(out) + len(piece) > self.max_request_bytes:
                    raise TooLarge()
                self.reserve(len(piece))
                extra += len(piece)
                out += piece
                if d.eof:
                    break
            if not d.eof:
                raise BadEncoding("truncated gzip data")
        except zlib.error as exc:
            self.release(extra)
            raise BadEncoding(f"corrupt gzip data: {exc}") from exc
        except BaseException:
            self.release(extra)
            raise
        return bytes(out), extra

    def submit(self, signal: Signal, body: bytes, content_type: str, transport: str,
               reserved: int) -> Future[PartResult]:
        job = Job(reserved=reserved, part=Part(signal, body, content_type, transport))
        return self.committer.submit(job)
