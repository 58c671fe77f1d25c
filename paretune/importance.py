"""Parameter importance per optimized metric (SigOpt's `metric_importances`).

Method: scikit-learn's random forest regressor fits each optimized metric on the completed
observations' assignments; `sklearn.inspection.permutation_importance` then measures, on
observations the forest did not train on (two-fold cross-fitting), how much the forest's R^2
drops when one parameter's column is shuffled. Drops below zero (noise) count as zero and the
rest are normalised to sum to 1, so a parameter that does not matter scores near 0.

Trees split on order alone, so numbers enter as they are (log-scale or not) and categories as
their index; a parameter an assignment lacks (a conditional one) is missing, which the forest
handles. Large histories are subsampled (`MAX_SAMPLES`, a fixed seed) to keep this well under a
second; callers cache by `storage.report.Version` (the dashboard does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from optimizer import ExperimentSpec
from optimizer.spec import Parameter

MIN_OBSERVATIONS = 10
MAX_SAMPLES = 1000
N_TREES = 50


@dataclass(frozen=True)
class MetricImportance:
    """Importances of every tunable parameter for one metric, summing to 1 (or None: why not)."""

    metric: str
    importances: dict[str, float] | None
    observations: int
    reason: str | None = None


def metric_importances(
    spec: ExperimentSpec,
    observations: Iterable[tuple[dict[str, Any], dict[str, float]]],
    seed: int = 0,
) -> list[MetricImportance]:
    """Importance of each tunable parameter for each optimized metric.

    `observations` are the completed ones as (assignments, values) pairs.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    parameters = [p for p in spec.parameters if p.tunable]
    completed = list(observations)
    results = []
    for metric in spec.optimized_metrics:
        rows = [(a, v[metric.name]) for a, v in completed if metric.name in v]
        if len(rows) > MAX_SAMPLES:
            keep = np.random.default_rng(seed).choice(len(rows), MAX_SAMPLES, replace=False)
            rows = [rows[i] for i in sorted(keep)]
        reason = _why_not(parameters, rows)
        if reason is not None:
            results.append(MetricImportance(metric.name, None, len(rows), reason))
            continue
        features = np.array([[_feature(p, a.get(p.name)) for p in parameters] for a, _ in rows], dtype=float)
        target = np.array([value for _, value in rows], dtype=float)
        folds = np.random.default_rng(seed).permutation(len(rows)) % 2
        drops = np.zeros(len(parameters))
        for fold in (0, 1):
            train, test = folds != fold, folds == fold
            forest = RandomForestRegressor(n_estimators=N_TREES, min_samples_leaf=2, random_state=seed, n_jobs=1)
            forest.fit(features[train], target[train])
            drops += permutation_importance(forest, features[test], target[test], n_repeats=5,
                                            random_state=seed, n_jobs=1).importances_mean
        positive = np.clip(drops, 0.0, None)
        total = positive.sum()
        if total <= 0:
            results.append(MetricImportance(metric.name, None, len(rows),
                                            "no parameter predicts this metric better than chance yet"))
            continue
        results.append(MetricImportance(
            metric.name, {p.name: float(share) for p, share in zip(parameters, positive / total)}, len(rows)))
    return results


def _why_not(parameters: list[Parameter], rows: list[tuple[dict[str, Any], float]]) -> str | None:
    if not parameters:
        return "the experiment has no tunable parameter"
    if len(rows) < MIN_OBSERVATIONS:
        return f"needs {MIN_OBSERVATIONS} completed observations, has {len(rows)}"
    if len({value for _, value in rows}) < 2:
        return "every observation has the same value"
    return None


def _feature(parameter: Parameter, value: Any) -> float:
    if value is None:
        return np.nan
    if parameter.type == "categorical":
        return float((parameter.categorical_values or ()).index(value))
    return float(value)
