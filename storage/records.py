"""Plain records the storage layer returns: no connection, no lazy loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from paretune.optimizer import ExperimentSpec


@dataclass(frozen=True)
class ExperimentRecord:
    id: int
    name: str
    spec: ExperimentSpec
    state: str
    created_at: datetime
    budget: int | None  # the observation budget in force: the spec's, or the latest override
    project: str | None = None


@dataclass(frozen=True)
class SuggestionRecord:
    id: int
    experiment_id: int
    assignments: dict[str, Any]
    state: str
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    task: str | None = None  # the multitask fidelity to run it at (SigOpt's tasks)


@dataclass(frozen=True)
class ObservationRecord:
    id: int
    experiment_id: int
    suggestion_id: int
    assignments: dict[str, Any]
    values: dict[str, float] | None
    failed: bool
    failure_reason: str | None
    duration_s: float | None
    run_id: int | None
    created_at: datetime
    value_stddevs: dict[str, float] | None = None
    task: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False  # stopped early: its values are its last checkpoint's, at `fidelity`
    fidelity: float | None = None  # checkpoints reached / max_checkpoints, for a stopped trial


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    status: str
    experiment_id: int | None
    suggestion_id: int | None
    parameters: dict[str, Any]
    metadata: dict[str, Any]
    metrics: dict[str, float]
    git_commit: str | None
    host: str | None
    device: str | None
    failure_reason: str | None
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class Progress:
    """How much of an experiment's observation budget is spent.

    The budget counts in cost units, as SigOpt's does with tasks: an observation costs its
    task's cost (1 without tasks), so `spent` equals `observations` for most experiments.
    """

    budget: int | None
    observations: int
    completed: int
    failed: int
    open_suggestions: int
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    spent: float = 0.0
    open_cost: float = 0.0  # what the open suggestions will cost once observed
    stopped: int = 0  # stopped early (neither completed nor failed); counted in `observations`
    least_trial_cost: float = 1.0  # the experiment's `ExperimentSpec.least_trial_cost`

    @property
    def remaining(self) -> float | None:
        """Budget left for new suggestions: open ones are already committed to it."""
        return None if self.budget is None else max(self.budget - self.spent - self.open_cost, 0.0)

    @property
    def done(self) -> bool:
        """The budget is spent: what is left of it, if anything, is less than the cheapest trial."""
        return self.budget is not None and budget_spent(self.budget, self.spent, self.least_trial_cost)


def budget_spent(budget: float, spent: float, least_trial_cost: float) -> bool:
    """Whether less than one trial's least cost is left (fractional costs add up inexactly)."""
    return budget - spent < least_trial_cost - 1e-9


@dataclass(frozen=True)
class RunEnvironment:
    """Where a run ran: host, device and the code's git commit (or why there is none)."""

    host: str
    device: str
    git_commit: str | None
    git_note: str | None = None

    def metadata(self) -> dict[str, str]:
        """What goes into the run's metadata beside the columns: why the commit is missing."""
        return {} if self.git_note is None else {"git_commit_unavailable": self.git_note}
