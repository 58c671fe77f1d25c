"""kill -9 of the server under load: after a restart, every acknowledged observation is stored and
every acknowledged open suggestion is still open. The clients count what was acknowledged in a
side file, not through the server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from paretune.storage import DuckDBStorage
from server_fixtures import Server, make_token

pytestmark = pytest.mark.slow
CLIENTS = 4
KILL_AFTER = 24  # acknowledged observations before the kill
DEFINITION = {"name": "faults", "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
              "metrics": [{"name": "y", "objective": "maximize"}], "observation_budget": 5000}


def client_loop(url: str, token: str, side_file: Path, lock: threading.Lock, stop: threading.Event) -> None:
    """suggest -> (every third one kept open) -> observe, noting each acknowledgement in the side file."""
    session = requests.Session()
    session.auth = (token, "")
    turn = 0
    while not stop.is_set():
        try:
            answer = session.post(f"{url}/suggestions", timeout=30)
            if answer.status_code != 200:
                return
            suggestion = answer.json()["id"]
            turn += 1
            note = {"open": suggestion}
            if turn % 3:
                with lock, side_file.open("a") as side:
                    side.write(json.dumps({"sent": suggestion}) + "\n")
                observed = session.post(f"{url}/observations", timeout=30,
                                        json={"suggestion": suggestion, "values": [{"name": "y", "value": turn}]})
                if observed.status_code != 200:
                    return
                note = {"observed": suggestion, "observation": observed.json()["id"]}
            with lock, side_file.open("a") as side:
                side.write(json.dumps(note) + "\n")
        except requests.RequestException:
            return


def test_kill_9_under_load_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    db, side_file = tmp_path / "team.duckdb", tmp_path / "acknowledged.jsonl"
    token = make_token(db)
    server = Server(db, tmp_path / "server.log").start()
    try:
        created = requests.post(f"{server.url}/v1/experiments", json=DEFINITION, auth=(token, ""), timeout=60)
        url = f"{server.url}/v1/experiments/{created.json()['id']}"
        lock, stop = threading.Lock(), threading.Event()
        clients = [threading.Thread(target=client_loop, args=(url, token, side_file, lock, stop))
                   for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and (not side_file.exists() or
                                               side_file.read_text().count('"observed"') < KILL_AFTER):
            time.sleep(0.05)
        server.kill()
        stop.set()
        for client in clients:
            client.join(timeout=60)
    finally:
        server.stop()
    notes = [json.loads(line) for line in side_file.read_text().splitlines()]
    observed = {n["observed"]: n["observation"] for n in notes if "observed" in n}
    sent = {n["sent"] for n in notes if "sent" in n}
    kept_open = {n["open"] for n in notes if "open" in n}
    assert len(observed) >= KILL_AFTER and kept_open

    restarted = Server(db, tmp_path / "server.log").start()  # DuckDB replays what was committed
    try:
        with DuckDBStorage(db, read_only=True) as storage:
            experiment_id = int(created.json()["id"])
            by_suggestion = {o.suggestion_id: o for o in storage.observations(experiment_id)}
            states = {s.id: s.state for s in storage.list_suggestions(experiment_id)}
        for suggestion, observation in observed.items():
            assert str(by_suggestion[int(suggestion)].id) == observation  # every acknowledged observation
        for suggestion in kept_open - sent:
            assert states[int(suggestion)] == "open"  # never observed, still open: not expired by the restart
        assert set(states.values()) <= {"open", "completed"}
        answer = requests.post(f"{url.replace(server.url, restarted.url)}/observations", auth=(token, ""), timeout=60,
                               json={"suggestion": sorted(kept_open - sent)[0], "values": [{"name": "y", "value": 1}]})
        assert answer.status_code == 200, answer.text  # an open suggestion is observed after the restart
    finally:
        restarted.stop()
