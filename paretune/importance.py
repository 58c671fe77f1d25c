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
from typing import Any, Mapping, Sequence

import numpy as np

from paretune.optimizer import ExperimentSpec
from paretune.optimizer.spec import Parameter

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
    assignments: Mapping[str, Sequence[Any]],
    values: Mapping[str, Sequence[float | None]],
    seed: int = 0,
) -> list[MetricImportance]:
    """Importance of each tunable parameter for each optimized metric.

    Columns, one entry per observation: `assignments[parameter][i]` and `values[metric][i]`
    (None where observation i has no value: a failed one, or a parameter it lacks).
    """
    parameters = [p for p in spec.parameters if p.tunable]
    features_all = np.column_stack([_feature_column(p, assignments.get(p.name)) for p in parameters]) \
        if parameters else None
    results = []
    for metric in spec.optimized_metrics:
        target_all = np.array(values.get(metric.name, []), dtype=float)
        rows = np.flatnonzero(~np.isnan(target_all))
        if len(rows) > MAX_SAMPLES:
            rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_SAMPLES, replace=False))
        reason = _why_not(parameters, target_all[rows])
        if reason is not None or features_all is None:
            results.append(MetricImportance(metric.name, None, len(rows), reason))
            continue
        from sklearn.ensemble import RandomForestRegressor  # only now: a slow import, and a reason needs none
        from sklearn.inspection import permutation_importance

        features, target = features_all[rows], target_all[rows]
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


def _why_not(parameters: list[Parameter], target: np.ndarray) -> str | None:
    if not parameters:
        return "the experiment has no tunable parameter"
    if len(target) < MIN_OBSERVATIONS:
        return f"needs {MIN_OBSERVATIONS} completed observations, has {len(target)}"
    if np.all(target == target[0]):
        return "every observation has the same value"
    return None


def _feature_column(parameter: Parameter, column: Sequence[Any] | None) -> np.ndarray:
    """Numbers as they are, categories as their index, missing as NaN."""
    if column is None:
        return np.zeros(0)
    if parameter.type == "categorical":
        index = {value: float(i) for i, value in enumerate(parameter.categorical_values or ())}
        return np.array([index.get(value, np.nan) for value in column], dtype=float)
    return np.array(column, dtype=float)
