"""Tokens: every /v1 request needs a live one; a read-only one only reads; revoked ones stop working."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from sigopt import Connection
from sigopt.exception import ApiException
from starlette.testclient import TestClient

from paretune.server.app import create_app
from paretune.storage import DuckDBStorage
from server_fixtures import make_token, paretune, running_server

pytestmark = pytest.mark.slow
DEFINITION = {"name": "auth", "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
              "metrics": [{"name": "y", "objective": "maximize"}], "observation_budget": 5}


def test_tokens_gate_every_request(tmp_path: Path) -> None:
    db = tmp_path / "team.duckdb"
    writer, reader = make_token(db, "writer"), make_token(db, "reader", read_only=True)
    with running_server(db, tmp_path / "server.log") as server:
        url = f"{server.url}/v1/experiments"
        bare = requests.post(url, json=DEFINITION, timeout=30)
        assert bare.status_code == 401 and "no API token" in bare.json()["message"]
        wrong = requests.post(url, json=DEFINITION, auth=("pt_not-a-token", ""), timeout=30)
        assert wrong.status_code == 401 and "unknown" in wrong.json()["message"]

        experiment = Connection(client_token=writer, api_url=server.url).experiments().create(**DEFINITION)
        read_only = Connection(client_token=reader, api_url=server.url)
        assert read_only.experiments(experiment.id).fetch().name == "auth"  # reading is allowed
        with pytest.raises(ApiException) as refused:
            read_only.experiments(experiment.id).suggestions().create()
        assert refused.value.status_code == 403 and "read-only" in str(refused.value)
        assert DuckDBStorage(db, read_only=True).list_suggestions(int(experiment.id)) == []

        assert paretune("token", "revoke", "writer", db=db).returncode == 0
        time.sleep(1.2)  # a running server re-reads tokens at least every second
        with pytest.raises(ApiException) as revoked:
            Connection(client_token=writer, api_url=server.url).experiments(experiment.id).suggestions().create()
        assert revoked.value.status_code == 401
        assert requests.get(f"{server.url}/", timeout=30).status_code == 200  # loopback: the dashboard is open
    log = (tmp_path / "server.log").read_text()
    assert writer not in log and reader not in log
    listed = paretune("token", "list", db=db).stdout
    assert "revoked" in listed and writer not in listed


def test_the_dashboard_asks_for_a_token_beyond_loopback(tmp_path: Path) -> None:
    db = tmp_path / "team.duckdb"
    token = make_token(db)
    with TestClient(create_app(str(db), protect_dashboard=True)) as client:
        asked = client.get("/")
        assert asked.status_code == 401 and asked.headers["www-authenticate"].startswith("Basic")
        assert client.get("/", auth=(token, "")).status_code == 200
        assert client.get("/health").status_code == 200
