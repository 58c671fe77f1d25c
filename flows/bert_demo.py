"""The BERT demo: distil a fine-tuned MiniLM-L6 into smaller students on a slice of SQuAD 2.0, on CPU.

`experiments/bert_squad2_demo.yaml` at demo scale, offline: the preprocess flow first (split,
windows, the teacher's one-off fine-tune and its logits, on every core), then the tune flow with
a local Dask cluster of two single-threaded workers, a Prefect API under .paretune/prefect and
the embedded DuckDB file. It ends with where the results are and the Pareto frontier of
`HasAns_f1` (the official evaluation of the answerable eval questions with answers always given,
SQuAD 1.1-style; not SQuAD 2.0's `exact`, stored beside it) against `num_parameters`.
The data is the official SQuAD 2.0 dev set: `../shared/data/squad2/dev-v2.0.json`
beside the repository where it is there, else `--data PATH`, else the hub's `squad_v2`
validation split (the same questions, same article titles) when the machine is online.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from paretune.flows.demo import demo_experiment, frontier_console_table, print_where, wide_console
from paretune.flows.local_prefect import prefect_api
from paretune.flows.preprocess import PreprocessParameters, preprocess_squad
from paretune.flows.tune import ExperimentSource, TuneOptions, TuneResult, finished_tune
from paretune.optimizer import ExperimentSpec
from paretune.dashboard import write_static_report
from paretune.storage import DuckDBStorage
from paretune.storage.artifacts import ArtifactStore
from paretune.storage.report import experiment_report
from paretune.dashboard.picture import frontier_png

DEMO_SPEC = Path(__file__).resolve().parents[1] / "experiments" / "bert_squad2_demo.yaml"
PREFECT_HOME = Path(".paretune/prefect")
EXPORT_ROOT = Path(".paretune/bert-demo")
HUB_DATASET, HUB_SPLIT = "squad_v2", "validation"
WORKERS = 2


def demo_definition(data: str | None) -> dict[str, Any]:
    """The demo experiment with its data source resolved: `data`, else the yaml's shared file where
    it exists, else the hub's dev split. A missing `data` file is an error naming it."""
    definition = yaml.safe_load(DEMO_SPEC.read_text())
    trial = definition["metadata"]["trial"]
    if data is not None:
        if "://" not in data and not Path(data).is_file():
            raise SystemExit(f"--data {data}: no such file; give the SQuAD 2.0 dev JSON (dev-v2.0.json)")
        trial["train_data"] = data
    elif not Path(trial["train_data"]).is_file():
        print(
            f"SQuAD 2.0 dev data not found at {Path(trial['train_data']).resolve()}: using the hub's "
            f"{HUB_DATASET} ({HUB_SPLIT} split). Offline, put dev-v2.0.json there or pass --data PATH."
        )
        trial["train_data"], trial["train_split"] = HUB_DATASET, HUB_SPLIT
    return definition


def prepare_data(spec: ExperimentSpec) -> None:
    """Windows, teacher and teacher logits cached once with every core, before single-threaded trials."""
    parameters = PreprocessParameters.from_trial_settings(spec.metadata["trial"])
    try:
        preprocess_squad(parameters)
    except ConnectionError as error:
        raise SystemExit(
            f"could not load SQuAD 2.0 from {parameters.train_data!r} ({error}). Put the official dev set at "
            "../shared/data/squad2/dev-v2.0.json beside the repository, or pass --data PATH/TO/dev-v2.0.json"
        ) from None


def main(argv: list[str] | None = None) -> TuneResult:
    parser = argparse.ArgumentParser(prog="python -m paretune.flows.bert_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="paretune.duckdb", help="DuckDB file (default: paretune.duckdb)")
    parser.add_argument("--data", help="SQuAD 2.0 dev JSON (default: ../shared/data/squad2/dev-v2.0.json, else the hub)")
    args = parser.parse_args(argv)
    console = wide_console()
    spec = ExperimentSpec.model_validate(demo_definition(args.data))
    experiment_id = demo_experiment(args.db, spec)
    with prefect_api(home=PREFECT_HOME):
        prepare_data(spec)
        result = finished_tune(
            ExperimentSource(experiment=str(experiment_id)), args.db, TuneOptions(parallelism=WORKERS, n_workers=WORKERS)
        )
    show_results(console, args.db, result)
    return result


def show_results(console: Console, db_path: str, result: TuneResult) -> None:
    """How the demo ends: the frontier table, where everything is (exported tables, the frontier
    picture, the static page), then the next three commands."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        exported = storage.export_experiment(result.experiment_id, ArtifactStore(str(EXPORT_ROOT)))
        picture = EXPORT_ROOT / "frontier.png"
        picture.write_bytes(frontier_png(experiment_report(storage, result.experiment_id)))
    page = write_static_report(db_path, result.experiment_id, str(EXPORT_ROOT / "frontier.html"))
    # HasAns_* score the answerable questions with answers always given; exact and f1 are SQuAD
    # 2.0's (no-answer threshold calibrated on held-out train questions).
    console.print(frontier_console_table(db_path, result.experiment_id,
                                         ": HasAns = answerable questions, answers always given; exact/f1 = SQuAD 2.0"))
    print_where(console, result, db_path, PREFECT_HOME,
                f"Tables (observations, frontier, threshold report): {', '.join(exported)}",
                f"Frontier picture: {picture.resolve()}",
                f"The experiment page (opens with no server or network): {Path(page).resolve()}")


if __name__ == "__main__":
    main()
