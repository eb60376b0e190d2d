"""One Settings object; every TELLTALE_* environment variable is declared here and nowhere else."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_DB = "TELLTALE_DB"
ENV_MAX_RECORD_BYTES = "TELLTALE_MAX_RECORD_BYTES"
ENV_MAX_FUTURE_SECONDS = "TELLTALE_MAX_FUTURE_SECONDS"
ENV_TOKEN = "TELLTALE_TOKEN"  # bearer token of `serve` (and of commands that go through it)

DEFAULT_DB = "telltale.duckdb"
# Timestamps before this (1990-01-01) are "impossible": typically zero, seconds-for-nanos, or garbage.
EARLIEST_VALID_NS = 631_152_000 * 1_000_000_000


@dataclass(frozen=True)
class Settings:
    db_path: Path = Path(DEFAULT_DB)
    # Records larger than this (encoded size) are quarantined as oversize.
    max_record_bytes: int = 1 << 20
    # How far in the future a timestamp may lie before it is impossible (clock skew allowance).
    max_future_seconds: int = 86_400
    clock: Callable[[], int] = field(default=time.time_ns, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if env.get(ENV_DB):
            values["db_path"] = Path(env[ENV_DB])
        if env.get(ENV_MAX_RECORD_BYTES):
            values["max_record_bytes"] = int(env[ENV_MAX_RECORD_BYTES])
        if env.get(ENV_MAX_FUTURE_SECONDS):
            values["max_future_seconds"] = int(env[ENV_MAX_FUTURE_SECONDS])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def latest_valid_ns(self) -> int:
        return self.clock() + self.max_future_seconds * 1_000_000_000
