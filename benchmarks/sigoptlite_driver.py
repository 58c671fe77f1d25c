"""Drive SigOpt's own optimizer (sigoptlite) from another interpreter, one JSON line per command.

sigoptlite needs Python 3.10 and numpy < 1.23, so the quality benchmark runs this script with
that virtual environment's python and talks to it over stdin/stdout:

    {"op": "create", "spec": {...SigOpt experiment...}, "seed": 3}   -> {"ok": true}
    {"op": "suggest"}                       -> {"id": "1", "assignments": {...}, "task": "cheap" | null}
    {"op": "observe", "id": "1", "values": {"f1": 0.2} | null}       -> {"ok": true}

`values: null` reports a failed trial. Nothing else is written to stdout.
"""

import json
import random
import sys

import numpy as np


def main() -> None:
    from sigopt import Connection

    connection = Connection(driver="lite")
    experiment = None
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "create":
            random.seed(command["seed"])
            np.random.seed(command["seed"])
            experiment = connection.experiments().create(**command["spec"])
            reply = {"ok": True}
        elif command["op"] == "suggest":
            suggestion = connection.experiments(experiment.id).suggestions().create()
            assignments = {key: _plain(value) for key, value in suggestion.assignments.items()}
            reply = {"id": suggestion.id, "assignments": assignments,
                     "task": suggestion.task.name if getattr(suggestion, "task", None) else None}
        elif command["op"] == "observe":
            observations = connection.experiments(experiment.id).observations()
            if command["values"] is None:
                observations.create(suggestion=command["id"], failed=True)
            else:
                values = [{"name": name, "value": value} for name, value in command["values"].items()]
                observations.create(suggestion=command["id"], values=values)
            reply = {"ok": True}
        else:
            reply = {"error": f"unknown op {command['op']!r}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


if __name__ == "__main__":
    main()
