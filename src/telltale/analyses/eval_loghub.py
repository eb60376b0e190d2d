"""Score the template miner on Loghub 2k sets: grouping accuracy (GA) and throughput, beside
Drain's published GA and drain3 measured in the same run.

Each line's message is the structured CSV's `Content` column (Loghub's benchmark likewise hands
parsers the header format); `EventId` is read only for scoring, never shown to a miner. GA: a
line is correct only if its predicted group's line set equals exactly one ground-truth event's
line set.

Throughput is timed fairly both ways: each parser gets the same Content strings, is built before
its clock starts (configuration and regex compiling are not lines parsed), and runs on a fresh
instance `repeat` times, alternating with the other so both see the same machine load; the best
run counts (the least disturbed one, as `timeit` advises). drain3 is timed through its own
masker and Drain tree, without the result dict its `TemplateMiner.add_log_message` also builds,
so its fastest path is the one compared."""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telltale.analyses.log_templates import TemplateMiner
from telltale.render.rows import Rows

# ICSE-SEIP'19 (Zhu et al.) Drain grouping accuracy; other sets: unknown.
DRAIN_PUBLISHED = {"HDFS": 0.998, "Zookeeper": 0.967, "Apache": 1.000, "OpenSSH": 0.788,
                   "Linux": 0.690}
_LOG_NAME = re.compile(r"(.+)_2k\.log\Z")
REPEAT = 5  # timed runs per parser and dataset; the best counts

Parser = Callable[[list[str]], list[Any]]


@dataclass(frozen=True)
class DatasetScore:
    name: str
    lines: int
    ga: float
    lines_per_s: float
    templates: int
    drain3_ga: float | None
    drain3_lines_per_s: float | None

    @property
    def drain_published(self) -> float | None:
        return DRAIN_PUBLISHED.get(self.name)

    @property
    def speedup(self) -> float | None:
        """The miner's lines/s over drain3's, both measured in this run."""
        return self.lines_per_s / self.drain3_lines_per_s if self.drain3_lines_per_s else None


@dataclass(frozen=True)
class LoghubEvaluation:
    scores: list[DatasetScore]
    notes: list[str] = field(default_factory=list)

    @property
    def mean_ga(self) -> float | None:
        return sum(s.ga for s in self.scores) / len(self.scores) if self.scores else None

    def _overall(self, speeds: Sequence[float | None]) -> float | None:
        """Lines/s over all datasets together (total lines / total time)."""
        if not self.scores or any(not v for v in speeds):
            return None
        return sum(s.lines for s in self.scores) / sum(s.lines / v for s, v in
                                                        zip(self.scores, speeds, strict=True) if v)

    @property
    def lines_per_s(self) -> float | None:
        return self._overall([s.lines_per_s for s in self.scores])

    @property
    def drain3_lines_per_s(self) -> float | None:
        return self._overall([s.drain3_lines_per_s for s in self.scores])

    @property
    def speedup(self) -> float | None:
        mine, theirs = self.lines_per_s, self.drain3_lines_per_s
        return mine / theirs if mine and theirs else None

    def _mean(self, values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known and len(known) == len(values) else None

    def to_dict(self) -> dict[str, Any]:
        return {"datasets": {s.name: {"ga": s.ga, "lines_per_s": s.lines_per_s,
                                      "drain_published": s.drain_published,
                                      "drain3_ga": s.drain3_ga,
                                      "drain3_lines_per_s": s.drain3_lines_per_s,
                                      "speedup": s.speedup,
                                      "lines": s.lines, "templates": s.templates}
                             for s in self.scores},
                "mean_ga": self.mean_ga,
                "drain3_mean_ga": self._mean([s.drain3_ga for s in self.scores]),
                "lines_per_s": self.lines_per_s, "drain3_lines_per_s": self.drain3_lines_per_s,
                "speedup": self.speedup,
                "notes": self.notes}

    def to_rows(self) -> Rows:
        def speed(v: float | None) -> int | None:
            return round(v) if v else None

        rows: list[dict[str, Any]] = [
            {"dataset": s.name, "lines": s.lines, "templates": s.templates, "ga": s.ga,
             "drain_published": s.drain_published, "drain3_ga": s.drain3_ga,
             "lines_per_s": speed(s.lines_per_s), "drain3_lines_per_s": speed(s.drain3_lines_per_s),
             "speedup": s.speedup}
            for s in self.scores]
        if self.scores:
            rows.append({"dataset": "mean", "ga": self.mean_ga,
                         "drain_published": self._mean([s.drain_published for s in self.scores]),
                         "drain3_ga": self._mean([s.drain3_ga for s in self.scores]),
                         "lines_per_s": speed(self.lines_per_s),
                         "drain3_lines_per_s": speed(self.drain3_lines_per_s),
                         "speedup": self.speedup})
        notes = [*self.notes, "mean row: GA averaged over datasets, lines/s over all their lines"]
        return Rows("Loghub grouping accuracy", ["dataset", "lines", "templates", "ga",
                                                  "drain_published", "drain3_ga", "lines_per_s",
                                                  "drain3_lines_per_s", "speedup"], rows, notes)


def grouping_accuracy(predicted: Sequence[object], truth: Sequence[object]) -> float:
    """Share of lines whose predicted group has exactly the lines of one true event."""
    if not truth:
        return 0.0
    pred_size = Counter(predicted)
    true_size = Counter(truth)
    pair = Counter(zip(predicted, truth, strict=True))
    correct = sum(n for (p, t), n in pair.items() if n == pred_size[p] == true_size[t])
    return correct / len(truth)


def read_dataset(directory: Path, name: str) -> tuple[list[str], list[str]]:
    """(messages, event ids) from `<name>_2k.log_structured*.csv`, in line order."""
    candidates = sorted(directory.glob(f"{name}_2k.log_structured*.csv"))
    if not candidates:
        raise ValueError(f"{name}_2k.log has no {name}_2k.log_structured*.csv beside it")
    messages: list[str] = []
    events: list[str] = []
    with candidates[0].open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"Content", "EventId"} <= set(reader.fieldnames):
            raise ValueError(f"{candidates[0].name} lacks the Content and EventId columns")
        for row in reader:
            messages.append(row["Content"] or "")
            events.append(row["EventId"] or "")
    return messages, events


def _run(make: Callable[[], Parser], messages: list[str]) -> tuple[list[Any], float]:
    """(groups, lines/s) of one timed run on a fresh parser; `make` runs before the clock.

    Each run gets new string objects: a str caches its hash, and a line read from a stream has
    never been hashed, so a run must not profit from an earlier run's (or parser's) hashing."""
    lines = [m.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass") for m in messages]
    parse = make()
    start = time.perf_counter()
    groups = parse(lines)
    return groups, len(lines) / max(time.perf_counter() - start, 1e-9)


def _telltale() -> Parser:
    return TemplateMiner().add_all


def drain3_parser() -> Callable[[], Parser] | None:
    """A maker of fresh drain3 parsers (its default TemplateMiner config plus the usual masking),
    or None if drain3 is absent."""
    try:
        from drain3 import TemplateMiner as Drain3
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError:
        return None

    def make() -> Parser:
        config = TemplateMinerConfig()
        config.profiling_enabled = False
        # drain3's example masking: IPs, hex and numbers, applied before clustering.
        config.masking_instructions = [
            MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})"
                               r"((?=[^A-Za-z0-9])|$)", "IP"),
            MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
            MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
        ]
        miner = Drain3(config=config)
        drain, masker = miner.drain, miner.masker

        def parse(messages: list[str]) -> list[Any]:
            # What add_log_message does before building its result dict: mask, then cluster.
            # drain3 clusters keep absorbing lines; its final grouping is scored, as Loghub does.
            return [drain.add_log_message(masker.mask(m))[0].cluster_id for m in messages]
        return parse
    return make


def evaluate_loghub(directory: Path, *, with_drain3: bool = True,
                    repeat: int = REPEAT) -> LoghubEvaluation:
    """Run the miner (and drain3 when installed) on every `<Name>_2k.log` in directory."""
    names = sorted(m.group(1) for p in directory.glob("*_2k.log") if (m := _LOG_NAME.match(p.name)))
    if not names:
        raise ValueError(f"no <Name>_2k.log files in {directory}")
    notes = [f"lines/s: best of {max(repeat, 1)} runs per parser on fresh instances, alternating "
             "telltale and drain3 on the same Content strings"]
    drain3 = drain3_parser() if with_drain3 else None
    if with_drain3 and drain3 is None:
        notes.append("drain3 is not installed (pip install drain3): its columns are blank")
    scores = []
    for name in names:
        messages, events = read_dataset(directory, name)
        groups: list[Any] = []
        d_groups: list[Any] = []
        speed = d_speed = 0.0
        for _ in range(max(repeat, 1)):  # every run groups alike: the groups of any run will do
            groups, run_speed = _run(_telltale, messages)
            speed = max(speed, run_speed)
            if drain3 is not None:
                d_groups, run_speed = _run(drain3, messages)
                d_speed = max(d_speed, run_speed)
        d_ga = grouping_accuracy(d_groups, events) if drain3 is not None else None
        scores.append(DatasetScore(name, len(messages), grouping_accuracy(groups, events), speed,
                                   len(set(groups)), d_ga, d_speed if drain3 is not None else None))
    return LoghubEvaluation(scores, notes)
