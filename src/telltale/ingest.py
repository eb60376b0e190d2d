"""The ingest pipeline: sources → detect → decode → the store's one write path."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from telltale.model import Format, QuarantineReason, Signal
from telltale.normalize.detect import HEAD_BYTES, DetectionError, detect
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject
from telltale.sources.files import FileSource, SourceError, content_hash, expand
from telltale.store import BatchReport, Store


class Decoder(Protocol):
    def __call__(self, data: bytes, options: DecodeOptions) -> Decoded: ...


_DECODER_MODULES = {
    Format.OTLP_JSON: "telltale.normalize.otlp_json",
    Format.OTLP_PROTO: "telltale.normalize.otlp_binary",
    Format.JAEGER_JSON: "telltale.normalize.jaeger",
    Format.ZIPKIN_JSON: "telltale.normalize.zipkin",
    Format.CSV_SPANS: "telltale.normalize.csv_spans",
    Format.EVENTS_JSONL: "telltale.normalize.events",
}


def decoder_for(fmt: Format) -> Decoder:
    module = importlib.import_module(_DECODER_MODULES[fmt])
    decode: Decoder = module.decode
    return decode


@dataclass
class SourceResult:
    """The outcome for one source: its batch report, how the format was chosen, or an error."""

    source: str
    format: Format | None
    evidence: str
    report: BatchReport | None = None
    error: str | None = None


def _batch_key(data: bytes, fmt: str, mapping: dict[str, Any] | None) -> str:
    """Idempotency key: the same bytes read the same way are one batch, stored once."""
    how = fmt + (orjson.dumps(mapping, option=orjson.OPT_SORT_KEYS).decode() if mapping else "")
    return f"{content_hash(data)}:{how}"


def ingest_bytes(store: Store, data: bytes, *, source: str, fmt: Format = Format.AUTO,
                 mapping: dict[str, Any] | None = None,
                 signal: Signal | None = None) -> SourceResult:
    """Decode and commit one source's bytes. Undetectable input is quarantined whole."""
    evidence = "given with --format"
    if fmt is Format.AUTO:
        try:
            found = detect(data[:HEAD_BYTES], source)
        except DetectionError as exc:
            decoded = Decoded(rejects=[Reject(signal or Signal.TRACES, "file",
                                              QuarantineReason.UNPARSABLE,
                                              data[:1 << 20].decode(errors="replace"), str(exc))])
            report = store.commit(decoded, source=source, fmt="unknown",
                                  content_hash=_batch_key(data, "unknown", mapping))
            return SourceResult(source, None, str(exc), report)
        fmt, evidence = found.format, found.evidence
    options = DecodeOptions(source=source, mapping=mapping or {}, signal=signal)
    decoded = decoder_for(fmt)(data, options)
    report = store.commit(decoded, source=source, fmt=fmt.value,
                          content_hash=_batch_key(data, fmt.value, mapping))
    return SourceResult(source, fmt, evidence, report)


def ingest_paths(store: Store, paths: Iterable[str], *, fmt: Format = Format.AUTO,
                 mapping: dict[str, Any] | None = None, signal: Signal | None = None,
                 on_progress: Callable[[FileSource, int], None] | None = None,
                 ) -> list[SourceResult]:
    """Ingest every source named by `paths` (see `sources.files.expand`)."""
    return ingest_sources(store, expand(paths), fmt=fmt, mapping=mapping, signal=signal,
                          on_progress=on_progress)


def ingest_sources(store: Store, sources: Iterable[FileSource], *, fmt: Format = Format.AUTO,
                   mapping: dict[str, Any] | None = None, signal: Signal | None = None,
                   on_progress: Callable[[FileSource, int], None] | None = None,
                   ) -> list[SourceResult]:
    """Ingest sources one transaction each; one that cannot be read is reported with an error
    and does not stop the others."""
    results: list[SourceResult] = []
    for src in sources:
        try:
            data = src.read()
        except (OSError, SourceError) as exc:
            results.append(SourceResult(src.name, None, "", error=str(exc)))
        else:
            results.append(ingest_bytes(store, data, source=src.name, fmt=fmt,
                                        mapping=mapping, signal=signal))
        if on_progress is not None:
            on_progress(src, src.size if src.name != "-" else 0)
    return results
