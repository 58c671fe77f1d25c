"""The artifact store on a local folder and on a real S3 API (moto's server on loopback)."""

import io

import boto3
import pyarrow.parquet as pq
import pytest

import paretune
from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from paretune.storage import StorageError
from paretune.storage.artifacts import ArtifactStore


@pytest.fixture
def experiment(tmp_path):
    experiment = paretune.create_experiment(SIZE_VS_ERROR_SPEC, db=str(tmp_path / "a.duckdb"))
    for values in ({"accuracy": 0.8, "size": 100.0}, {"accuracy": 0.9, "size": 300.0}, {"accuracy": 0.5, "size": 400.0}):
        experiment.observe(experiment.suggest(), values=values)
    yield experiment
    experiment.storage.close()


def test_local_store_round_trip_and_listing(tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    url = store.put_bytes("trial-1/predictions.json", b"{}")
    assert url == str(tmp_path / "artifacts" / "trial-1" / "predictions.json")
    assert store.get_bytes("trial-1/predictions.json") == b"{}"
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights")
    store.put_file(str(source), "trial-1/checkpoint/model.bin")
    assert store.list() == ["trial-1/checkpoint/model.bin", "trial-1/predictions.json"]
    assert store.exists("trial-1/checkpoint/model.bin") and not store.exists("nothing")


@pytest.mark.parametrize("key", ["../escape", "/../../etc/passwd", ""])
def test_keys_cannot_escape_the_store(tmp_path, key):
    with pytest.raises(StorageError, match="relative path inside the store"):
        ArtifactStore(str(tmp_path)).path(key)


def test_unsupported_url_scheme_is_refused():
    with pytest.raises(StorageError, match="use a local folder"):
        ArtifactStore("ftp://host/folder")


def test_s3_round_trip(s3_endpoint):
    store = ArtifactStore("s3://paretune-artifacts/runs", endpoint_url=s3_endpoint)
    url = store.put_bytes("trial-7/predictions.json", b'{"q1": ""}')
    assert url == "s3://paretune-artifacts/runs/trial-7/predictions.json"
    assert store.get_bytes("trial-7/predictions.json") == b'{"q1": ""}'
    assert store.list("trial-7") == ["trial-7/predictions.json"]
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="paretune-artifacts", Prefix="runs/")
    assert [o["Key"] for o in listed["Contents"]] == ["runs/trial-7/predictions.json"]


def test_export_experiment_tables_to_s3_through_duckdb(experiment, s3_endpoint, monkeypatch):
    monkeypatch.setenv("PARETUNE_S3_ENDPOINT_URL", s3_endpoint)
    store = ArtifactStore("s3://paretune-artifacts/exports")
    urls = experiment.storage.export_experiment(experiment.id, store)
    assert urls == [f"s3://paretune-artifacts/exports/experiment-{experiment.id}/{name}.parquet"
                    for name in ("observations", "frontier", "threshold_report")]
    frontier = pq.read_table(io.BytesIO(store.get_bytes(f"experiment-{experiment.id}/frontier.parquet"))).to_pylist()
    assert sorted((row["value_1"], row["value_2"]) for row in frontier) == [(0.8, 100.0), (0.9, 300.0)]
    observations = pq.read_table(io.BytesIO(store.get_bytes(f"experiment-{experiment.id}/observations.parquet")))
    assert observations.num_rows == 3


def test_export_format_is_checked(experiment, tmp_path):
    with pytest.raises(StorageError, match="export format"):
        experiment.storage.export_experiment(experiment.id, ArtifactStore(str(tmp_path)), "xlsx")
