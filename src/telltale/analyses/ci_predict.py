"""Predict a CI run's duration and failure probability from what is known when it starts.

Features: workflow, branch (main or not, and the name), event, hour, weekday, files and lines
changed when the CI system recorded them, and the recent failure rate of the same workflow and
branch (runs that had finished before this one started). Models are scikit-learn gradient
boosting; the evaluation holds out the latest `holdout` share of runs (time order, never
shuffled) and always reports the naive baselines beside the model — median duration per
workflow, and the recent failure rate as the failure probability. The model is called better
only when it beats the baseline by a margin; otherwise the verdict says so.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import (  # type: ignore[import-untyped]  # no stubs
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.metrics import (  # type: ignore[import-untyped]
    brier_score_loss,
    mean_absolute_error,
    roc_auc_score,
)

from telltale.analyses.scope import Scope
from telltale.render.rows import Rows
from telltale.store import Store, ci_sql

RECENT = 10  # runs of the same workflow and branch behind the recent failure rate
MIN_RUNS = 40
# "Better" needs a margin, so noise on a no-signal history is not sold as skill.
MAE_GAIN = 0.05  # relative MAE reduction
AUC_GAIN = 0.03  # absolute ROC AUC gain (and a lower Brier score)

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class RunFeatures:
    """What is known when a run starts (the same for training rows and for a query)."""

    workflow: str
    branch: str
    event: str
    start_ns: int
    files: float | None = None
    lines: float | None = None


@dataclass
class _History:
    features: list[RunFeatures]
    recent: Array  # recent failure rate before each run (nan when none)
    duration: Array
    failed: Array


def _history(store: Store, scope: Scope) -> _History:
    rows = [r for r in ci_sql.runs(store.con, scope) if r[4] == 1]  # first attempts: retries
    # are decided by the outcome, not known at start
    finished: dict[tuple[str, str], deque[bool]] = defaultdict(deque)
    feats, recent, dur, failed = [], [], [], []
    pending: list[tuple[int, tuple[str, str], bool]] = []  # (end ns, key, failed), by end
    for ts, workflow, branch, event, _att, dur_s, bad, files, lines, _queue, end in rows:
        key = (str(workflow), str(branch))
        pending.append((int(end), key, bool(bad)))
        pending.sort()
        while pending and pending[0][0] <= ts:  # outcomes known before this run starts
            _, k, b = pending.pop(0)
            finished[k].append(b)
            if len(finished[k]) > RECENT:
                finished[k].popleft()
        done = finished[key]
        recent.append(sum(done) / len(done) if done else np.nan)
        feats.append(RunFeatures(str(workflow), str(branch), str(event), int(ts), files, lines))
        dur.append(float(dur_s))
        failed.append(bool(bad))
    return _History(feats, np.asarray(recent, float), np.asarray(dur, float),
                    np.asarray(failed, bool))


class _Encoder:
    """Categoricals → small integer codes (unknown → -1 → missing), numbers as they are."""

    def __init__(self, feats: list[RunFeatures]) -> None:
        self.codes = {name: {v: i for i, v in enumerate(sorted({getattr(f, name) for f in feats}))}
                      for name in ("workflow", "branch", "event")}

    def matrix(self, feats: list[RunFeatures], recent: Array) -> Array:
        out = np.full((len(feats), 9), np.nan)
        for i, f in enumerate(feats):
            when = datetime.fromtimestamp(f.start_ns / 1e9, UTC)
            for j, name in enumerate(("workflow", "branch", "event")):
                code = self.codes[name].get(getattr(f, name))
                out[i, j] = np.nan if code is None else code
            out[i, 3] = f.branch in ("main", "master")
            out[i, 4], out[i, 5] = when.hour, when.weekday()
            out[i, 6] = np.nan if f.files is None else f.files
            out[i, 7] = np.nan if f.lines is None else f.lines
            out[i, 8] = recent[i]
        return out


_CATEGORICAL = [True, True, True] + [False] * 6


def _models() -> tuple[HistGradientBoostingRegressor, HistGradientBoostingClassifier]:
    common: dict[str, Any] = {"categorical_features": _CATEGORICAL, "max_iter": 150,
                              "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 20,
                              "early_stopping": False, "random_state": 0}
    return HistGradientBoostingRegressor(**common), HistGradientBoostingClassifier(**common)


def _baseline_duration(train: list[RunFeatures], y: Array, test: list[RunFeatures]) -> Array:
    by: dict[str, list[float]] = defaultdict(list)
    for f, v in zip(train, y, strict=True):
        by[f.workflow].append(float(v))
    overall = float(np.median(y))
    return np.asarray([float(np.median(by[f.workflow])) if by.get(f.workflow) else overall
                       for f in test])


@dataclass(frozen=True)
class Metric:
    task: str
    metric: str
    model: float
    baseline: float
    better: str  # "lower" / "higher"


@dataclass
class Evaluation:
    train_runs: int
    test_runs: int
    metrics: list[Metric]
    duration_better: bool
    failure_better: bool | None  # None: the hold-out has only one outcome, AUC undefined

    def verdicts(self) -> list[str]:
        dur = ("duration model beats the baseline (median per workflow)" if self.duration_better
               else "duration model: no better than baseline (median per workflow)")
        fail = ("failure model: cannot be judged (the hold-out has one outcome only)"
                if self.failure_better is None else
                "failure model beats the baseline (recent failure rate)" if self.failure_better
                else "failure model: no better than baseline (recent failure rate)")
        return [dur, fail]

    def to_rows(self) -> Rows:
        cols = ["task", "metric", "model", "baseline", "better_is"]
        return Rows(f"CI prediction, time-ordered hold-out ({self.train_runs} train / "
                    f"{self.test_runs} test runs)", cols,
                    [{"task": m.task, "metric": m.metric, "model": m.model,
                      "baseline": m.baseline, "better_is": m.better} for m in self.metrics],
                    self.verdicts(), {"verdicts": self.verdicts()})


def _mape(y: Array, p: Array) -> float:
    return float(np.mean(np.abs(y - p) / np.maximum(np.abs(y), 1e-9)))


def evaluate(store: Store, scope: Scope, holdout: float = 0.25) -> Evaluation:
    h = _history(store, scope)
    n = len(h.features)
    if n < MIN_RUNS:
        raise ValueError(f"{n} finished first-attempt runs: at least {MIN_RUNS} are needed")
    cut = int(n * (1 - holdout))
    enc = _Encoder(h.features[:cut])
    x = enc.matrix(h.features, h.recent)
    reg, clf = _models()
    reg.fit(x[:cut], np.log1p(h.duration[:cut]))
    dur_model = np.expm1(reg.predict(x[cut:]))
    dur_base = _baseline_duration(h.features[:cut], h.duration[:cut], h.features[cut:])
    y = h.duration[cut:]
    metrics = [Metric("duration", "MAE s", float(mean_absolute_error(y, dur_model)),
                      float(mean_absolute_error(y, dur_base)), "lower"),
               Metric("duration", "MAPE", _mape(y, dur_model), _mape(y, dur_base), "lower")]
    prior = float(h.failed[:cut].mean())
    fail_base = np.where(np.isnan(h.recent[cut:]), prior, h.recent[cut:])
    fail_better: bool | None = None
    yf = h.failed[cut:]
    if len(set(h.failed[:cut].tolist())) == 2:
        clf.fit(x[:cut], h.failed[:cut])
        p = clf.predict_proba(x[cut:])[:, 1]
    else:
        p = np.full(len(yf), prior)
    brier_m, brier_b = float(brier_score_loss(yf, p)), float(brier_score_loss(yf, fail_base))
    metrics.append(Metric("failure", "Brier", brier_m, brier_b, "lower"))
    if len(set(yf.tolist())) == 2:
        auc_m, auc_b = float(roc_auc_score(yf, p)), float(roc_auc_score(yf, fail_base))
        metrics.append(Metric("failure", "ROC AUC", auc_m, auc_b, "higher"))
        fail_better = auc_m >= auc_b + AUC_GAIN and brier_m < brier_b
    mae_m, mae_b = metrics[0].model, metrics[0].baseline
    return Evaluation(cut, n - cut, metrics, mae_m < (1 - MAE_GAIN) * mae_b, fail_better)


@dataclass
class Prediction:
    query: RunFeatures
    duration_s: float
    baseline_duration_s: float
    failure_p: float
    baseline_failure_p: float
    evaluation: Evaluation

    def to_rows(self) -> list[Rows]:
        q = self.query
        cols = ["workflow", "branch", "event", "duration_s", "baseline_duration_s", "failure_p",
                "baseline_failure_p"]
        row = {"workflow": q.workflow, "branch": q.branch, "event": q.event,
               "duration_s": self.duration_s, "baseline_duration_s": self.baseline_duration_s,
               "failure_p": self.failure_p, "baseline_failure_p": self.baseline_failure_p}
        return [Rows("CI run prediction", cols, [row], self.evaluation.verdicts()),
                self.evaluation.to_rows()]


def predict(store: Store, scope: Scope, query: RunFeatures, holdout: float = 0.25) -> Prediction:
    """Evaluate on the hold-out, then train on all history and predict `query`."""
    evaluation = evaluate(store, scope, holdout)
    h = _history(store, scope)
    enc = _Encoder(h.features)
    same = [i for i, f in enumerate(h.features)
            if (f.workflow, f.branch) == (query.workflow, query.branch)]
    recent = h.failed[same[-RECENT:]].mean() if same else np.nan
    x, xq = enc.matrix(h.features, h.recent), enc.matrix([query], np.asarray([recent]))
    reg, clf = _models()
    reg.fit(x, np.log1p(h.duration))
    base_d = _baseline_duration(h.features, h.duration, [query])[0]
    prior = float(h.failed.mean())
    if len(set(h.failed.tolist())) == 2:
        clf.fit(x, h.failed)
        p = float(clf.predict_proba(xq)[0, 1])
    else:
        p = prior
    return Prediction(query, float(np.expm1(reg.predict(xq))[0]), float(base_d), p,
                      prior if np.isnan(recent) else float(recent), evaluation)
