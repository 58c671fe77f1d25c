"""The flagship objective reports a curve (several evaluations per epoch) and obeys "stop"."""

from __future__ import annotations

from test_bert_distill import FAST_KNOBS, settings  # noqa: F401  (a fixture)

from paretune.bert.distill import run_trial
from paretune.optimizer import ExperimentSpec
from paretune.trial import TrialContext
from tests.sweeps import ROOT


def test_a_student_reports_hasans_f1_and_its_size_at_each_evaluation_and_returns_when_told_to_stop(settings):
    told: list[int] = []

    def stop_at_third(checkpoint: int, values: dict[str, float]) -> bool:
        told.append(checkpoint)
        return checkpoint == 3

    context = TrialContext(settings=settings | {"epochs": 2, "evaluations_per_epoch": 2}, checkpoint_sink=stop_at_third)
    metrics = run_trial({**FAST_KNOBS, "n_layers": 1, "n_heads": 2}, context)
    assert told == [1, 2, 3]  # the fourth evaluation never ran
    curve = [values for _, values in context.checkpoints]
    assert {values["num_parameters"] for values in curve} == {metrics["num_parameters"]}
    assert all("HasAns_f1" in values for values in curve)
    assert metrics["HasAns_f1"] == curve[-1]["HasAns_f1"] and metrics["exact"] == curve[-1]["exact"]


def test_the_documented_early_stopping_spec_loads_with_a_checkpoint_per_evaluation():
    spec = ExperimentSpec.from_file(ROOT / "experiments" / "bert_squad2_cpu_early_stopping.yaml")
    trial = spec.metadata["trial"]
    assert spec.training_monitor.max_checkpoints == trial["epochs"] * trial["evaluations_per_epoch"]
    assert spec.early_stopping.type == "pareto"
    assert {m.name for m in spec.optimized_metrics} == {"HasAns_f1", "num_parameters"}
