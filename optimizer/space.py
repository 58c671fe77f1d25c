"""The mixed search space as the models see it: every tunable parameter and every conditional
on one axis of the unit cube.

Doubles map linearly to [0, 1], log-doubles map their logarithm to [0, 1], ints and grids map
to [0, 1] with each allowed value owning an equal-width cell (decoding takes the cell, so
integrality, grids and bounds hold by construction), categoricals and conditionals are the
index of their value. Working in the unit cube lets hyperopt's uniform prior (mu 0.5, sigma 1)
serve every continuous axis alike; a parameter's `prior` replaces it on its axis.

A parameter whose conditions do not hold is *inactive*: its axis holds `INACTIVE`, a value
outside the unit interval. The Parzen estimators skip inactive entries (each parameter is
modelled on the observations where it was active); the Gaussian processes see "inactive" as
one more level of the axis, apart from every active value, so points on the same branch
compare on the axes they share.

A categorical parameter whose values are all numbers (hidden sizes, batch sizes, as SigOpt
definitions often list them) is *ordinal* to the Gaussian processes (`surrogate_rows`): its
input is its value's place by rank, and neighbouring values are near, so a trend seen at some
values (the best learning rate falling as students widen) carries to the next. Unordered, a
value tried only at a poor setting of another axis is condemned as a whole. The Parzen
estimators keep every categorical's index.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from paretune.optimizer.spec import BetaPrior, ExperimentSpec, NormalPrior, Parameter

INACTIVE = -1.0
PRIOR_MU, PRIOR_SIGMA = 0.5, 1.0  # hyperopt's uniform prior on a unit axis


class SearchSpace:
    """Encode assignments to rows of floats and decode rows back, for one experiment."""

    def __init__(self, spec: ExperimentSpec):
        self.spec = spec
        self.fixed = {p.name: p.coerce(p.default_value) for p in spec.parameters
                      if not p.tunable and p.default_value is not None}
        self.parameters = tuple(p for p in spec.parameters if p.name not in self.fixed)
        self.conditionals = tuple(spec.conditionals or ())
        self.names = tuple(p.name for p in self.parameters) + tuple(c.name for c in self.conditionals)
        self.continuous = np.array([p.type != "categorical" for p in self.parameters]
                                   + [False] * len(self.conditionals), dtype=bool)
        # categorical axis -> each value's place on [0, 1] by its rank, for categoricals of numbers
        self.ordinal_places = {d: places for d, p in enumerate(self.parameters) if p.type == "categorical"
                               and (places := _ordinal_places(p.categorical_values or ())) is not None}
        self.ordinal = np.isin(np.arange(self.n_dims), list(self.ordinal_places))
        self.n_choices = ([len(p.categorical_values or ()) for p in self.parameters]
                          + [len(c.values) for c in self.conditionals])
        self.defaults = {p.name: p.default_value for p in self.parameters if p.default_value is not None}
        self.default_axes = np.array([d for d, p in enumerate(self.parameters) if p.default_value is not None], dtype=int)
        self.default_units = np.array([_encode_one(p, p.default_value) for p in self.parameters
                                       if p.default_value is not None], dtype=float)
        self.priors = [_unit_prior(p) for p in self.parameters] + [(PRIOR_MU, PRIOR_SIGMA)] * len(self.conditionals)
        first_conditional = len(self.parameters)
        # per parameter axis with conditions: [(conditional axis, allowed value indices), ...]
        self.conditions = {
            d: [(first_conditional + [c.name for c in self.conditionals].index(name),
                 np.array([self.conditionals[[c.name for c in self.conditionals].index(name)].values.index(v)
                           for v in values], dtype=float))
                for name, values in p.conditions.items()]
            for d, p in enumerate(self.parameters) if p.conditions
        }
        self.constraints = _constraint_rows(spec, self.parameters)
        # every axis a double without a prior or grid: a box where any point is as likely as any other
        self.uniform_box = bool(self.parameters) and not self.conditionals and all(
            p.type == "double" and p.prior is None and not _cells(p) for p in self.parameters)

    @property
    def n_dims(self) -> int:
        return len(self.names)

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, assignments: dict[str, Any]) -> np.ndarray:
        return self.encode_many([assignments])[0]

    def encode_many(self, assignments: list[dict[str, Any]],
                    columns: dict[str, list[Any] | np.ndarray] | None = None) -> np.ndarray:
        """Rows for many (validated) assignments, a column at a time; absent parameters
        (inactive under their conditions) encode as INACTIVE. `columns` are the same
        assignments by parameter (from `validate_history`), when they were taken already."""
        rows = np.full((len(assignments), self.n_dims), INACTIVE)
        for d, p in enumerate(self.parameters):
            present: list[int] | slice = slice(None)  # a parameter without conditions is always there
            if p.conditions:
                present = [i for i, a in enumerate(assignments) if p.name in a]
                if not present:
                    continue
                column = [assignments[i][p.name] for i in present]
            else:
                column = columns[p.name] if columns is not None else [a[p.name] for a in assignments]
            if p.type == "categorical":
                index = {value: float(i) for i, value in enumerate(p.categorical_values or ())}
                rows[present, d] = list(map(index.__getitem__, column))
            else:
                rows[present, d] = _encode_numbers(p, np.array(column, dtype=float))
        for offset, conditional in enumerate(self.conditionals):
            index = {value: float(i) for i, value in enumerate(conditional.values)}
            rows[:, len(self.parameters) + offset] = [index[a[conditional.name]] for a in assignments]
        return rows

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        """Assignments in SigOpt's shape: conditionals by name, inactive parameters omitted."""
        decoded: dict[str, Any] = {}
        for offset, conditional in enumerate(self.conditionals):
            decoded[conditional.name] = conditional.values[int(row[len(self.parameters) + offset])]
        for p, u in zip(self.parameters, row):
            if p.active(decoded):
                decoded[p.name] = _decode(p, float(u))
        return decoded | {name: value for name, value in self.fixed.items() if self.spec.parameter(name).active(decoded)}

    def surrogate_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows as the Gaussian processes read them: an ordinal categorical's index
        replaced by its value's place (inactive entries stay `INACTIVE`, apart from all)."""
        if not self.ordinal_places:
            return rows
        rows = rows.copy()
        for d, places in self.ordinal_places.items():
            active = rows[:, d] != INACTIVE
            rows[active, d] = places[rows[active, d].astype(int)]
        return rows

    # -- making valid rows ----------------------------------------------------------------------
    def snap(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Move rows onto values an assignment can take (integer and grid cells' centres,
        categories), mark axes whose conditions fail INACTIVE, and draw a value for an axis
        that became active without one (a perturbation that switched a conditional)."""
        rows = rows.copy()
        missing = rows < INACTIVE / 2  # a perturbed INACTIVE entry; small negative steps are clipped
        if missing.any():
            rows[missing] = self.sample_uniform(rng, len(rows))[missing]
        snapped = np.clip(rows, 0.0, 1.0)
        for d, p in enumerate(self.parameters):
            cells = _cells(p)
            if cells:
                snapped[:, d] = (np.minimum(np.floor(snapped[:, d] * cells), cells - 1) + 0.5) / cells
        for d, choices in enumerate(self.n_choices):
            if choices:
                snapped[:, d] = np.clip(np.round(rows[:, d]), 0, choices - 1)
        return self.deactivate(snapped)

    def moved_levels(self, rows: np.ndarray, axis: int, levels: int) -> np.ndarray:
        """`rows` with a discrete `axis` (an int, a grid or a categorical) moved `levels` values
        up (down when negative), clipped to its range; not snapped. A categorical of numbers
        moves by value, however the definition lists them (widths often run from large to small)."""
        rows = rows.copy()
        if axis in self.ordinal_places:
            by_value = np.argsort(self.ordinal_places[axis], kind="stable")  # indices, smallest value first
            rank = np.argsort(by_value)[rows[:, axis].astype(int)]
            rows[:, axis] = by_value[np.clip(rank + levels, 0, len(by_value) - 1)]
        elif self.n_choices[axis]:
            rows[:, axis] = np.clip(rows[:, axis] + levels, 0, self.n_choices[axis] - 1)
        else:
            rows[:, axis] = np.clip(rows[:, axis] + levels / max(_cells(self.parameters[axis]), 1), 0.0, 1.0)
        return rows

    def deactivate(self, rows: np.ndarray) -> np.ndarray:
        for d, conditions in self.conditions.items():
            active = np.ones(len(rows), dtype=bool)
            for axis, allowed in conditions:
                active &= np.isin(rows[:, axis], allowed)
            rows[~active, d] = INACTIVE
        return rows

    def feasible(self, rows: np.ndarray) -> np.ndarray:
        """Which (snapped) rows satisfy every linear constraint, on their decoded values."""
        if self.constraints is None:
            return np.ones(len(rows), dtype=bool)
        axes, weights, limits, tolerance = self.constraints
        values = np.column_stack([_decode_numbers(self.parameters[d], rows[:, d]) for d in axes])
        return np.all(values @ weights.T <= limits + tolerance, axis=1)

    def sample_uniform(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Raw draws (not snapped): uniform on every axis, or from the axis's prior."""
        rows = rng.uniform(0.0, 1.0, size=(size, self.n_dims))
        for d, choices in enumerate(self.n_choices):
            if choices:
                rows[:, d] = rng.integers(choices, size=size)
        for d, p in enumerate(self.parameters):
            if isinstance(p.prior, NormalPrior):
                mu, sigma = self.priors[d]
                rows[:, d] = _truncated_normal(rng, mu, sigma, size)
            elif isinstance(p.prior, BetaPrior):
                rows[:, d] = rng.beta(p.prior.shape_a, p.prior.shape_b, size=size)
        return rows

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """`size` valid rows (snapped, satisfying every linear constraint) from the prior."""
        rows = self.snap(self.sample_uniform(rng, size), rng)
        if self.constraints is None:
            return rows
        kept = rows[self.feasible(rows)]
        for _ in range(50):
            if len(kept) >= size:
                break
            more = self.snap(self.sample_uniform(rng, 4 * size), rng)
            kept = np.vstack([kept, more[self.feasible(more)]])
        if len(kept) < size:  # a thin feasible set: walk inside it from a known feasible point
            kept = np.vstack([kept, self._walk(rng, size - len(kept))])
        return kept[:size]

    def _walk(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Hit-and-run inside the constrained polytope (unit coordinates of the constrained
        axes), from the feasible point linear programming found; other axes from the prior."""
        from paretune.optimizer.spec import _feasible_point

        axes, weights, limits, _ = self.constraints
        start = _feasible_point(self.spec)
        assert start is not None  # the spec was refused otherwise
        spans = np.array([self.parameters[d].high - self.parameters[d].low for d in axes])
        lows = np.array([self.parameters[d].low for d in axes])
        point = np.array([(start[self.parameters[d].name] - lows[i]) / spans[i] for i, d in enumerate(axes)])
        unit_weights, unit_limits = weights * spans, limits - weights @ lows
        rows = []
        for _ in range(size * 4):
            direction = rng.normal(size=len(axes))
            direction /= np.linalg.norm(direction)
            step_low, step_high = _chord(point, direction, unit_weights, unit_limits)
            point = np.clip(point + rng.uniform(step_low, step_high) * direction, 0.0, 1.0)
            row = self.snap(self.sample_uniform(rng, 1), rng)
            row[0, axes] = point
            row = self.snap(row, rng)
            if self.feasible(row)[0]:
                rows.append(row[0])
            if len(rows) == size:
                break
        while len(rows) < size:  # integral corners: the linear program's point itself
            row = self.snap(self.sample_uniform(rng, 1), rng)
            row[0, axes] = [(start[self.parameters[d].name] - lows[i]) / spans[i] for i, d in enumerate(axes)]
            rows.append(self.snap(np.clip(row, 0.0, 1.0), rng)[0])
        return np.array(rows)

    def distances(self, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Pairwise distances: Euclidean on continuous axes plus 1 per differing category."""
        if len(others) == 0:
            return np.full((len(rows), 0), np.inf)
        diff = rows[:, None, :] - others[None, :, :]
        continuous = np.sum(diff[:, :, self.continuous] ** 2, axis=2)
        categorical = np.sum(diff[:, :, ~self.continuous] != 0, axis=2)
        return np.sqrt(continuous + categorical)


def _unit_prior(parameter: Parameter) -> tuple[float, float]:
    """The prior's (mu, sigma) on the parameter's unit axis, for TPE's prior component."""
    prior = parameter.prior
    if isinstance(prior, NormalPrior):
        span = parameter.high - parameter.low
        return (prior.mean - parameter.low) / span, prior.scale / span
    if isinstance(prior, BetaPrior):
        a, b = prior.shape_a, prior.shape_b
        return a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return PRIOR_MU, PRIOR_SIGMA


def _truncated_normal(rng: np.random.Generator, mu: float, sigma: float, size: int) -> np.ndarray:
    draws = rng.normal(mu, sigma, size=size)
    for _ in range(20):
        outside = (draws < 0.0) | (draws > 1.0)
        if not outside.any():
            break
        draws[outside] = rng.normal(mu, sigma, size=int(outside.sum()))
    return np.clip(draws, 0.0, 1.0)


def _constraint_rows(spec: ExperimentSpec, parameters: tuple[Parameter, ...]):
    """Linear constraints as (axes, weights, limits, tolerance) with ``values @ weights.T <= limits``."""
    if not spec.linear_constraints:
        return None
    from paretune.optimizer.spec import CONSTRAINT_TOLERANCE

    names = [p.name for p in parameters]
    axes = sorted({names.index(term.name) for c in spec.linear_constraints for term in c.terms})
    weights = np.zeros((len(spec.linear_constraints), len(axes)))
    limits = np.zeros(len(spec.linear_constraints))
    for i, constraint in enumerate(spec.linear_constraints):
        sign = -1.0 if constraint.type == "greater_than" else 1.0
        for term in constraint.terms:
            weights[i, axes.index(names.index(term.name))] = sign * term.weight
        limits[i] = sign * constraint.threshold
    tolerance = CONSTRAINT_TOLERANCE * np.maximum(1.0, np.abs(limits))
    return axes, weights, limits, tolerance


def _chord(point: np.ndarray, direction: np.ndarray, weights: np.ndarray, limits: np.ndarray) -> tuple[float, float]:
    """The step range keeping `point + t * direction` inside the unit box and the constraints."""
    low, high = -np.inf, np.inf
    rows = np.vstack([weights, np.eye(len(point)), -np.eye(len(point))])
    bounds = np.concatenate([limits, np.ones(len(point)), np.zeros(len(point))])
    rate = rows @ direction
    room = bounds - rows @ point
    for r, m in zip(rate, room):
        if r > 1e-12:
            high = min(high, m / r)
        elif r < -1e-12:
            low = max(low, m / r)
    return (min(low, 0.0), max(high, 0.0)) if np.isfinite(low) and np.isfinite(high) else (0.0, 0.0)


def _ordinal_places(values: tuple[Any, ...] | list[Any]) -> np.ndarray | None:
    """Each value's place on [0, 1] by its rank (equal values share one), if every value is a
    finite number and there are at least three (two values have no order beyond which is
    which); else None (an unordered categorical)."""
    try:
        numbers = np.array([float(v) for v in values])
    except (TypeError, ValueError):
        return None
    if len(numbers) < 3 or not np.all(np.isfinite(numbers)):
        return None
    distinct, ranks = np.unique(numbers, return_inverse=True)
    return ranks / max(len(distinct) - 1, 1)


def _cells(parameter: Parameter) -> int:
    """How many values an int or grid axis can take (0 for doubles and categoricals)."""
    if parameter.grid is not None:
        return len(parameter.grid)
    if parameter.type == "int":
        return int(parameter.high) - int(parameter.low) + 1
    return 0


def _encode_one(parameter: Parameter, value: Any) -> float:
    if parameter.type == "categorical":
        return float((parameter.categorical_values or ()).index(value))
    return float(_encode_numbers(parameter, np.array([value], dtype=float))[0])


def _encode_numbers(parameter: Parameter, values: np.ndarray) -> np.ndarray:
    low, high = parameter.low, parameter.high
    if parameter.grid is not None:
        ordered = np.sort(np.array(parameter.grid, dtype=float))
        return (np.searchsorted(ordered, values) + 0.5) / len(ordered)
    if parameter.type == "int":
        return (values - low + 0.5) / _cells(parameter)
    if parameter.is_log:
        return (np.log(values) - math.log(low)) / (math.log(high) - math.log(low))
    return (values - low) / (high - low)


def _decode_numbers(parameter: Parameter, units: np.ndarray) -> np.ndarray:
    low, high = parameter.low, parameter.high
    units = np.clip(units, 0.0, 1.0)
    cells = _cells(parameter)
    if cells:
        index = np.minimum(np.floor(units * cells), cells - 1)
        if parameter.grid is not None:
            return np.sort(np.array(parameter.grid, dtype=float))[index.astype(int)]
        return low + index
    if parameter.is_log:
        values = np.exp(math.log(low) + units * (math.log(high) - math.log(low)))
    else:
        values = low + units * (high - low)
    return np.clip(values, low, high)


def _decode(parameter: Parameter, unit: float) -> float | int | str:
    if parameter.type == "categorical":
        values = parameter.categorical_values or ()
        return str(values[int(min(max(round(unit), 0), len(values) - 1))])
    low, high = parameter.low, parameter.high
    unit = min(max(unit, 0.0), 1.0)
    cells = _cells(parameter)
    if cells:
        index = min(int(math.floor(unit * cells)), cells - 1)
        if parameter.grid is not None:
            value = sorted(parameter.grid)[index]  # the grid's own number, exactly
            return int(value) if parameter.type == "int" else float(value)
        return int(low) + index
    if parameter.is_log:
        value = math.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
    else:
        value = low + unit * (high - low)
    return float(min(max(value, low), high))
