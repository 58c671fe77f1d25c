"""SigOpt's whole definition through the store: each key from the spec to suggestions,
observations and the SQL views, with its refusals, through the API, the CLI and the tuning flow."""

from __future__ import annotations

import json

import pytest

import paretune
from paretune.cli import main as cli
from paretune.storage import StorageError
from paretune.storage.report import experiment_report

BASE = {
    "name": "sigopt-keys",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "loss", "objective": "minimize"}, {"name": "cost", "objective": "minimize"}],
    "observation_budget": 20,
}
CONDITIONAL = BASE | {
    "conditionals": [{"name": "arch", "values": ["mlp", "attention"]}],
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
        {"name": "n_heads", "type": "int", "bounds": {"min": 1, "max": 8}, "conditions": {"arch": ["attention"]}},
    ],
}


def test_conditionals_reach_suggestions_observations_and_the_views(tmp_path):
    experiment = paretune.create_experiment(CONDITIONAL, db=str(tmp_path / "c.duckdb"))
    for suggestion in experiment.suggest_batch(12):
        assert suggestion.assignments["arch"] in ("mlp", "attention")
        assert ("n_heads" in suggestion.assignments) == (suggestion.assignments["arch"] == "attention")
        experiment.observe(suggestion, values={"loss": suggestion.assignments["x"], "cost": 1.0})
    rows = paretune.connect(tmp_path / "c.duckdb").execute(
        "SELECT p.observation_id, p.parameter, p.type, p.value, p.active FROM observation_parameters p "
        "ORDER BY p.observation_id, p.parameter").fetchall()
    by_observation: dict[int, dict[str, tuple]] = {}
    for observation_id, parameter, kind, value, active in rows:
        by_observation.setdefault(observation_id, {})[parameter] = (kind, value, active)
    assert len(by_observation) == 12
    for parameters in by_observation.values():
        assert parameters["arch"][0] == "conditional"
        heads = parameters["n_heads"]
        assert heads[2] == (json.loads(parameters["arch"][1]) == "attention")
        assert (heads[1] is None) == (not heads[2])  # inactive: NULL
    with pytest.raises(StorageError, match="n_heads: inactive here"):
        experiment.storage.create_suggestions(experiment.id, [{"arch": "mlp", "x": 0.5, "n_heads": 2}])
    # the report model (dashboard, static report, artifacts) shows the conditional and NULL where inactive
    points = experiment_report(experiment.storage, experiment.id).points
    assert all(("n_heads" in p.assignments) == (p.assignments["arch"] == "attention") for p in points)


def test_linear_constraints_grids_priors_and_defaults_hold_in_every_suggestion(tmp_path):
    spec = BASE | {
        "parameters": [
            {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}, "default_value": 0.25,
             "prior": {"name": "normal", "mean": 0.3, "scale": 0.1}},
            {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}, "default_value": 0.25},
            {"name": "width", "type": "int", "grid": [16, 64, 256]},
        ],
        "linear_constraints": [{"type": "less_than", "threshold": 1.0,
                                "terms": [{"name": "x", "weight": 1}, {"name": "y", "weight": 1}]}],
        "observation_budget": 40,
    }
    experiment = paretune.create_experiment(spec, db=str(tmp_path / "l.duckdb"))
    first = experiment.suggest()
    assert (first.assignments["x"], first.assignments["y"]) == (0.25, 0.25)  # the defaults come first
    experiment.observe(first, values={"loss": 0.5, "cost": 1.0})
    for _ in range(15):
        suggestion = experiment.suggest()
        a = suggestion.assignments
        assert a["x"] + a["y"] <= 1.0 + 1e-9 and a["width"] in (16, 64, 256)
        experiment.observe(suggestion, values={"loss": (a["x"] - 0.3) ** 2, "cost": a["width"] / 256})
    stored = experiment.storage.get_experiment(experiment.id).spec
    assert stored.linear_constraints and stored.parameter("width").grid == (16, 64, 256)
    assert stored.parameter("x").prior.mean == 0.3


def test_value_stddevs_are_stored_beside_values_and_reach_the_search(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    experiment = paretune.create_experiment(BASE, db=str(db))
    first, second, third = experiment.suggest_batch(3)
    experiment.observe(first, values={"loss": 0.4, "cost": 1.0}, value_stddevs={"loss": 0.05},
                       metadata={"gpu": "A100"})
    experiment.observe(second, values=[{"name": "loss", "value": 0.3, "value_stddev": 0.02},
                                       {"name": "cost", "value": 2.0}])
    assert cli(["observe", str(third.id), "--value", "loss=0.2±0.01", "--value", "cost=3+-0.5",
                "--metadata", "gpu=H100", "--metadata", "epochs=3", "--db", str(db)]) == 0
    observations = experiment.observations()
    assert [o.value_stddevs for o in observations] == [{"loss": 0.05}, {"loss": 0.02}, {"loss": 0.01, "cost": 0.5}]
    assert [o.metadata for o in observations] == [{"gpu": "A100"}, {}, {"gpu": "H100", "epochs": 3}]
    assert [o.value_stddevs for o in experiment.storage.history(experiment.id)] == [
        {"loss": 0.05}, {"loss": 0.02}, {"loss": 0.01, "cost": 0.5}]
    stddevs = paretune.connect(db).execute(
        "SELECT metric, value, value_stddev FROM observation_values ORDER BY observation_id, metric").fetchall()
    assert stddevs[:2] == [("cost", 1.0, None), ("loss", 0.4, 0.05)]
    capsys.readouterr()
    fourth = experiment.suggest()
    for bad, message in ((["--value", "loss=0.1±-1", "--value", "cost=1"], "negative"),
                         (["--value", "loss=0.1±x", "--value", "cost=1"], "'x' is not a number")):
        with pytest.raises(SystemExit):
            cli(["observe", str(fourth.id), *bad, "--db", str(db)])
        assert message in capsys.readouterr().err
    with pytest.raises(StorageError, match="value_stddev: -1.0 is negative"):
        experiment.observe(fourth, values={"loss": 0.1, "cost": 1.0}, value_stddevs={"loss": -1.0})
    with pytest.raises(StorageError, match="value_stddevs.bleu: no value reported"):
        experiment.observe(fourth, values={"loss": 0.1, "cost": 1.0}, value_stddevs={"bleu": 1.0})
    assert experiment.storage.get_suggestion(fourth.id).state == "open"


def test_tasks_spend_the_budget_in_cost_units_and_only_full_cost_reaches_the_frontier(tmp_path, capsys):
    spec = BASE | {"tasks": [{"name": "cheap", "cost": 0.25}, {"name": "full", "cost": 1.0}],
                   "observation_budget": 3}
    db = tmp_path / "t.duckdb"
    experiment = paretune.create_experiment(spec, db=str(db))
    spent = 0.0
    while not experiment.progress().done:
        suggestion = experiment.suggest()
        assert suggestion.task in ("cheap", "full")
        # a cheap task reports a flattering value: it must not reach the frontier
        loss = 0.0 if suggestion.task == "cheap" else 1.0 + suggestion.assignments["x"]
        experiment.observe(suggestion, values={"loss": loss, "cost": suggestion.assignments["x"]})
        spent += {"cheap": 0.25, "full": 1.0}[suggestion.task]
    progress = experiment.progress()
    assert progress.spent == pytest.approx(spent) and spent >= 3 and progress.observations > 3
    observations = experiment.observations()
    assert {o.task for o in observations} == {"cheap", "full"}
    frontier_ids = {row["observation_id"] for row in experiment.frontier()}
    assert frontier_ids and all(o.task == "full" for o in observations if o.id in frontier_ids)
    assert paretune.connect(db).execute("SELECT sum(cost) FROM observation_costs").fetchall() == [(pytest.approx(spent),)]
    assert experiment.storage.get_experiment(experiment.id).state == "completed"
    capsys.readouterr()
    other = paretune.create_experiment(spec | {"name": "tasks-cli", "observation_budget": 10}, db=str(db))
    assert cli(["suggest", str(other.id), "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)["task"] in ("cheap", "full")


def test_num_solutions_and_project(tmp_path, capsys):
    spec = BASE | {"metrics": [{"name": "loss", "objective": "minimize"}], "num_solutions": 3,
                   "project": "distillation", "observation_budget": 30}
    db = tmp_path / "n.duckdb"
    experiment = paretune.create_experiment(spec, db=str(db))
    for _ in range(20):
        suggestion = experiment.suggest()
        experiment.observe(suggestion, values={"loss": (suggestion.assignments["x"] - 0.5) ** 2})
    best = experiment.best()
    assert len(best) == 3
    losses = [b["values"]["loss"] for b in best]
    assert losses[0] == min(o.values["loss"] for o in experiment.observations())
    assert len({round(b["assignments"]["x"], 6) for b in best}) == 3
    assert cli(["list", "--db", str(db)]) == 0
    assert "distillation" in capsys.readouterr().out
    assert paretune.connect(db).execute("SELECT project FROM experiments").fetchall() == [("distillation",)]


@pytest.mark.parametrize(("edit", "message"), [
    ({"parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1},
                      "conditions": {"arch": ["mlp"]}}]}, "parameters[0].conditions.arch: no conditional named 'arch'"),
    ({"parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
                     {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}}],
      "linear_constraints": [{"type": "greater_than", "threshold": 3,
                              "terms": [{"name": "x", "weight": 1}, {"name": "y", "weight": 1}]}]},
     "linear_constraints: infeasible"),
    ({"parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1},
                      "prior": {"name": "normal", "mean": 2, "scale": 1}}]}, "prior.mean: 2 is outside bounds"),
    ({"parameters": [{"name": "x", "type": "int", "grid": [1, 2, 16], "bounds": {"min": 1, "max": 8}}]},
     "grid: 16 is outside bounds"),
    ({"tasks": [{"name": "a", "cost": 0.5}, {"name": "b", "cost": 0.2}]}, "exactly one task must have cost 1"),
])
def test_the_cli_refuses_bad_keys_naming_the_field_and_creates_nothing(tmp_path, capsys, edit, message):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(BASE | edit))
    assert cli(["create", str(path), "--db", str(tmp_path / "x.duckdb")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.duckdb").exists()


@pytest.mark.slow
def test_the_flow_runs_each_task_with_its_settings_and_counts_cost_units(tmp_path, prefect_api):
    from paretune.flows.tune import ExperimentSource, TuneOptions, tune

    spec = BASE | {
        "name": "multitask-flow",
        "metrics": BASE["metrics"] + [{"name": "epochs", "strategy": "store"}],
        "tasks": [{"name": "quick", "cost": 0.2}, {"name": "full", "cost": 1.0}],
        "observation_budget": 4,
        "metadata": {"objective": "tests.objectives:task_aware",
                     "trial": {"epochs": 10, "task_settings": {"quick": {"epochs": 2}}}},
    }
    db = str(tmp_path / "flow.duckdb")
    experiment = paretune.create_experiment(spec, db=db)
    experiment.storage.close()
    result = tune(ExperimentSource(experiment=str(experiment.id)), db,
                  TuneOptions(parallelism=2, n_workers=2, report=False))
    experiment = paretune.open_experiment(result.experiment_id, db=db)
    observations = experiment.observations()
    assert {o.task for o in observations} == {"quick", "full"}
    for observation in observations:
        assert observation.values["epochs"] == (2.0 if observation.task == "quick" else 10.0)
        assert observation.value_stddevs == {"loss": 0.01}  # the objective's value object, kept whole
        assert observation.values["cost"] == (0.2 if observation.task == "quick" else 1.0)
    progress = experiment.progress()
    assert progress.done and progress.spent == pytest.approx(sum(o.values["cost"] for o in observations))
    assert progress.spent < 4 + 1.0  # the last trial may overrun by less than one full task
