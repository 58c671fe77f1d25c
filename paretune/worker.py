"""The worker side of a trial: the message channel to the flow and the function Dask runs.

An objective is any importable `module:function(assignments: dict, context: TrialContext) ->
dict[str, float]`. It runs on a Dask worker and never touches the database. `run_objective` is
the function the tuning flow submits; it talks to the flow through one `distributed.Queue` of
typed messages (`TrialStarted`, `TrialCheckpoint`, `TrialFinished`), in order, and the flow
stores what they carry.

Exactly once. Dask re-runs a task whose worker died (`allowed-failures`) and recomputes a lost
worker's finished keys, so a trial could run twice: hours of GPU time each. Two rules stop that:

- **A claim token.** The flow puts one token in the trial's claim queue before submitting it;
  `run_objective` must take it (an atomic get on the scheduler) before calling the objective. A
  second attempt, or one the flow cancelled first by taking the token itself, finds none and
  returns without running anything.
- **Results travel as messages.** The outcome is posted the moment the objective returns, and
  the flow releases the Dask future as soon as it has it, so nothing finished is left on a
  worker for Dask to recompute.

Checkpoints are answered. After posting a `TrialCheckpoint` the objective waits for the flow's
`CheckpointAnswer` on the trial's own answer queue (stop or go on; the flow decides from the
store). While it waits it checks, once a second, that the flow's Dask client is still connected:
a flow that died answers nothing, and the trial is abandoned rather than holding its worker.

Workers load neither Prefect nor the database.
"""

from __future__ import annotations

import logging
import pickle

import distributed

from paretune.environment import capture_environment
from paretune.trial import (CheckpointAnswer, TrialCheckpoint, TrialContext, TrialFinished, TrialRequest, TrialStarted,
                            call_objective, task_settings)

worker_logger = logging.getLogger(__name__)
ANSWER_POLL_S = 1.0  # how often a trial waiting for its checkpoint's answer checks that the flow is alive


class FlowUnreachable(BaseException):
    """The flow can no longer be told anything (it stopped, or this worker is closing): the trial
    is abandoned. A BaseException, like KeyboardInterrupt, so an objective's `except Exception`
    does not swallow it."""


class MessageChannel:
    """A `distributed.Queue` of typed messages between workers and the flow, in order.

    Messages travel pickled: Dask's own serialization takes plain data only, and would log a
    fallback to pickle for every dataclass.
    """

    def __init__(self, name: str, client: distributed.Client):
        self.name = name
        self._queue = distributed.Queue(name, client=client)

    def put(self, message: object) -> None:
        try:
            self._queue.put(pickle.dumps(message))
        except Exception as error:
            raise FlowUnreachable(f"cannot reach the flow on {self.name}: {type(error).__name__}: {error}") from None

    def get(self, timeout_s: float | None) -> object:
        """The next message; TimeoutError when none came within `timeout_s` (None: wait for one)."""
        return pickle.loads(self._queue.get(timeout=timeout_s))

    def close(self) -> None:
        self._queue.close()

    def get_waiting(self) -> list[object]:
        """Every message waiting now, without blocking."""
        return [pickle.loads(data) for data in self._queue.get(batch=True)]


def run_objective(request: TrialRequest) -> bool:
    """On a Dask worker: run the trial if this is its one attempt; return whether it ran.

    The outcome goes to the flow as a `TrialFinished` message, not as this task's result.
    """
    client = distributed.get_client()
    if not distributed.Queue(request.claim, client=client).get(batch=True):
        return False  # a re-run after a lost worker, or cancelled before it started: never run twice
    channel = MessageChannel(request.channel, client)
    worker = distributed.get_worker().address

    sequence = 0

    def stream_checkpoint(epoch: int, values: dict[str, float]) -> bool:
        nonlocal sequence
        sequence += 1
        channel.put(TrialCheckpoint(request.suggestion_id, epoch, values, sequence))
        return request.answers is not None and wait_for_answer(client, request, sequence).should_stop

    context = TrialContext(suggestion_id=request.suggestion_id, settings=task_settings(request.settings, request.task),
                           task=request.task, task_cost=request.spec.task_cost(request.task),
                           checkpoint_sink=stream_checkpoint)
    try:
        channel.put(TrialStarted(request.suggestion_id, worker, capture_environment()))
        channel.put(TrialFinished(request.suggestion_id, call_objective(request, context)))
    except FlowUnreachable as gone:
        worker_logger.warning("trial %s abandoned: %s", request.suggestion_id, gone)
    return True


def wait_for_answer(client: distributed.Client, request: TrialRequest, sequence: int) -> CheckpointAnswer:
    """The flow's answer to checkpoint `sequence`; FlowUnreachable once the flow is gone."""
    answers = MessageChannel(str(request.answers), client)
    while True:
        try:
            answer = answers.get(ANSWER_POLL_S)
        except TimeoutError:
            if not client.run_on_scheduler(_client_connected, request.flow_client):
                raise FlowUnreachable(f"the flow ({request.flow_client}) left while checkpoint {sequence} "
                                      "waited for its answer") from None
            continue
        except Exception as error:
            raise FlowUnreachable(f"cannot hear from the flow: {type(error).__name__}: {error}") from None
        if isinstance(answer, CheckpointAnswer) and answer.sequence == sequence:
            return answer


def _client_connected(client_id: str | None, dask_scheduler: distributed.Scheduler | None = None) -> bool:
    return dask_scheduler is not None and client_id in dask_scheduler.clients
