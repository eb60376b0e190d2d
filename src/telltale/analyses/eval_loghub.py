"""Score the template miner on Loghub 2k sets: grouping accuracy (GA) and throughput, beside
Drain's published GA and drain3 measured in the same run.

Each line's message is the structured CSV's `Content` column (Loghub's benchmark likewise hands
parsers the header format); `EventId` is read only for scoring, never shown to a miner. GA: a
line is correct only if its predicted group's line set equals exactly one ground-truth event's
line set."""

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


@dataclass(frozen=True)
class LoghubEvaluation:
    scores: list[DatasetScore]
    notes: list[str] = field(default_factory=list)

    @property
    def mean_ga(self) -> float | None:
        return sum(s.ga for s in self.scores) / len(self.scores) if self.scores else None

    def _mean(self, values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known and len(known) == len(values) else None

    def to_dict(self) -> dict[str, Any]:
        return {"datasets": {s.name: {"ga": s.ga, "lines_per_s": s.lines_per_s,
                                      "drain_published": s.drain_published,
                                      "drain3_ga": s.drain3_ga,
                                      "drain3_lines_per_s": s.drain3_lines_per_s,
                                      "lines": s.lines, "templates": s.templates}
                             for s in self.scores},
                "mean_ga": self.mean_ga,
                "drain3_mean_ga": self._mean([s.drain3_ga for s in self.scores]),
                "notes": self.notes}

    def to_rows(self) -> Rows:
        rows: list[dict[str, Any]] = [
            {"dataset": s.name, "lines": s.lines, "templates": s.templates, "ga": s.ga,
             "drain_published": s.drain_published, "drain3_ga": s.drain3_ga,
             "lines_per_s": round(s.lines_per_s), "drain3_lines_per_s":
                 round(s.drain3_lines_per_s) if s.drain3_lines_per_s else None}
            for s in self.scores]
        if self.scores:
            rows.append({"dataset": "mean", "ga": self.mean_ga,
                         "drain_published": self._mean([s.drain_published for s in self.scores]),
                         "drain3_ga": self._mean([s.drain3_ga for s in self.scores])})
        return Rows("Loghub grouping accuracy", ["dataset", "lines", "templates", "ga",
                                                  "drain_published", "drain3_ga", "lines_per_s",
                                                  "drain3_lines_per_s"], rows, list(self.notes))


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


def _time(parse: Callable[[list[str]], list[Any]], messages: list[str]) -> tuple[list[Any], float]:
    start = time.perf_counter()
    groups = parse(messages)
    elapsed = max(time.perf_counter() - start, 1e-9)
    return groups, len(messages) / elapsed


def _telltale(messages: list[str]) -> list[int]:
    return TemplateMiner().add_all(messages)


def drain3_parser() -> Callable[[list[str]], list[Any]] | None:
    """drain3 with its default TemplateMiner config plus the usual masking, or None if absent."""
    try:
        from drain3 import TemplateMiner as Drain3
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError:
        return None

    def parse(messages: list[str]) -> list[Any]:
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
        ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
        # drain3 clusters keep absorbing lines; score its final grouping, as Loghub does.
        return ids
    return parse


def evaluate_loghub(directory: Path, *, with_drain3: bool = True) -> LoghubEvaluation:
    """Run the miner (and drain3 when installed) on every `<Name>_2k.log` in directory."""
    names = sorted(m.group(1) for p in directory.glob("*_2k.log") if (m := _LOG_NAME.match(p.name)))
    if not names:
        raise ValueError(f"no <Name>_2k.log files in {directory}")
    notes: list[str] = []
    drain3 = drain3_parser() if with_drain3 else None
    if with_drain3 and drain3 is None:
        notes.append("drain3 is not installed (pip install drain3): its columns are blank")
    scores = []
    for name in names:
        messages, events = read_dataset(directory, name)
        groups, speed = _time(_telltale, messages)
        d_ga = d_speed = None
        if drain3 is not None:
            d_groups, d_speed = _time(drain3, messages)
            d_ga = grouping_accuracy(d_groups, events)
        scores.append(DatasetScore(name, len(messages), grouping_accuracy(groups, events), speed,
                                   len(set(groups)), d_ga, d_speed))
    return LoghubEvaluation(scores, notes)
