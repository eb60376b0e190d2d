"""The incidents injected into a run: when they happen and what they touch.

Times are fractions of the simulated window, so a 2-minute test run has the same story as the
default 30 minutes. Generators read the plan; `truth.py` reports it together with what the
generated data actually contains (counts, measured slow-downs), never just the intent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telltale.sim.ids import I64, Bools


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int

    def contains(self, t: I64) -> Bools:
        return (t >= self.start_ns) & (t < self.end_ns)


@dataclass(frozen=True)
class Deploy:
    """A new version whose server spans are `factor` times slower (its own code, not callees)."""

    service: str
    at_ns: int
    old_version: str
    new_version: str
    factor: float


@dataclass(frozen=True)
class ErrorBurst:
    """Calls carrying `attribute = value` fail with `p_error` inside the window."""

    window: Window
    service: str
    variable: str  # the flow variable behind the attribute
    attribute: str
    value: str
    p_error: float
    status_code: int


@dataclass(frozen=True)
class Orphans:
    """The callers' client spans towards `service` are lost, so its server spans are orphans."""

    window: Window
    service: str


@dataclass(frozen=True)
class SwapCrisis:
    window: Window
    host: str
    peak_swap: float
    latency_factor: float  # server spans of services on the host, at the peak


@dataclass(frozen=True)
class FlakyJob:
    pipeline: str
    job: str
    p_fail: float  # first attempt fails; the retry passes


@dataclass(frozen=True)
class StuckWorker:
    at_ns: int


@dataclass(frozen=True)
class NPlusOne:
    """Inside the window, a share of the `parent` spans issue one `query` per item (between
    `min_repeats` and `max_repeats` of them) instead of one batched query: the N+1 pattern.
    The loop takes `time_share` of the step's own time, so no span's duration changes: the
    incident is structural, and other incidents' latency stays exactly as it was."""

    window: Window
    service: str
    parent: str  # span name of the handler step that loops
    table: str
    query: str
    share: float  # of the parent spans in the window
    min_repeats: int
    max_repeats: int
    median_ms: float  # nominal, for the template; durations come from `time_share`
    time_share: float


@dataclass(frozen=True)
class IncidentPlan:
    deploy: Deploy | None
    burst: ErrorBurst | None
    orphans: Orphans | None
    swap: SwapCrisis | None
    flaky: FlakyJob | None
    stuck: StuckWorker | None
    n_plus_one: NPlusOne | None = None

    @property
    def enabled(self) -> bool:
        return any(x is not None for x in (self.deploy, self.burst, self.orphans, self.swap,
                                            self.flaky, self.stuck, self.n_plus_one))

    @property
    def new_versions(self) -> dict[str, str]:
        return {self.deploy.service: self.deploy.new_version} if self.deploy else {}


def plan(start_ns: int, duration_s: float, enabled: bool) -> IncidentPlan:
    if not enabled:
        return IncidentPlan(None, None, None, None, None, None)
    span = int(duration_s * 1e9)

    def at(fraction: float) -> int:
        return start_ns + int(span * fraction)

    return IncidentPlan(
        deploy=Deploy("checkout", at(0.40), "1.4.2", "1.5.0", 3.0),
        burst=ErrorBurst(Window(at(0.55), at(0.62)), "payment", "provider",
                         "app.payment.provider", "acme-pay", 0.6, 503),
        orphans=Orphans(Window(at(0.20), at(0.30)), "catalog"),
        swap=SwapCrisis(Window(at(0.68), at(0.92)), "node-3", 0.9, 1.8),
        flaky=FlakyJob("build-and-test", "integration-tests", 0.3),
        stuck=StuckWorker(at(0.50)),
        n_plus_one=NPlusOne(Window(at(0.30), at(0.50)), "recommendation", "load candidates",
                            "products", "SELECT id, name, price FROM products WHERE id = $1",
                            0.5, 8, 15, 0.1, 0.38),
    )


def swap_ramp(swap: SwapCrisis, t: I64) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    """0 outside the crisis, rising to 1 over its first 60 % and holding to the end."""
    w = swap.window
    rise = (w.end_ns - w.start_ns) * 0.6
    ramp = np.clip((t - w.start_ns) / rise, 0.0, 1.0)
    return np.where(w.contains(t), ramp, 0.0)
