"""The tuning flow's side of Dask: submitting trials, hearing from them, stopping them.

One ordered stream of messages per flow run, a `distributed.Queue`: workers post `TrialStarted`,
`TrialCheckpoint` and `TrialFinished` (paretune.trial); this process adds `TrialEnded` from each
trial's future's done-callback (behind everything its worker posted) and `StopRequested` when
the run is cancelled. The scheduler blocks on that one queue: no polling, no batch barrier.

Every trial gets a claim token before it is submitted (paretune.trial explains the exactly-once
rules); taking the token back is how a trial that has not started is cancelled for sure.

A trial's checkpoints are answered on a queue of its own (`answers_name`), which its worker waits
on: the scheduler decides, `answer` delivers.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Union

import distributed
from distributed import KilledWorker

from paretune.trial import CheckpointAnswer, TrialMessage, TrialRequest
from paretune.worker import MessageChannel, run_objective

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialEnded:
    """One attempt's Dask future is done, however it went (posted by the flow process)."""

    suggestion_id: int
    attempt: int


@dataclass(frozen=True)
class StopRequested:
    """Stop the sweep: cancelled in Prefect, interrupted, or terminated."""

    reason: str


Message = Union[TrialMessage, TrialEnded, StopRequested]


@dataclass(frozen=True)
class Settled:
    """How a trial's future ended when no `TrialFinished` arrived: it ran (and its message was
    lost with its worker), never ran, or its worker died under it."""

    lost: bool
    detail: str


class Dispatcher:
    """Submits trials to a Dask cluster and turns everything that happens to them into messages."""

    def __init__(self, client: distributed.Client, run_name: str | None = None):
        self.client = client
        self.channel_name = f"paretune-trials-{run_name or uuid.uuid4()}"
        self.channel = MessageChannel(self.channel_name, client)
        self._requests: dict[int, TrialRequest] = {}
        self._futures: dict[int, distributed.Future] = {}
        self._attempts: dict[int, int] = {}
        self._claims: dict[int, distributed.Queue] = {}
        self._answers: dict[int, MessageChannel] = {}
        self._restarts: list[threading.Thread] = []

    @property
    def flow_client(self) -> str:
        """This flow's Dask client id: a worker waiting for an answer checks that it is still there."""
        return str(self.client.id)

    def claim_name(self, suggestion_id: int) -> str:
        return f"{self.channel_name}-claim-{suggestion_id}"

    def answers_name(self, suggestion_id: int) -> str:
        return f"{self.channel_name}-answers-{suggestion_id}"

    def answer(self, answer: CheckpointAnswer) -> None:
        """Tell the trial's worker whether to stop after its checkpoint."""
        channel = self._answers.get(answer.suggestion_id)
        if channel is None:
            channel = self._answers[answer.suggestion_id] = MessageChannel(self.answers_name(answer.suggestion_id),
                                                                           self.client)
        channel.put(answer)

    def submit(self, request: TrialRequest) -> None:
        """Put the trial's claim token, then submit it; its end is announced on the channel."""
        claim = distributed.Queue(request.claim, client=self.client)
        claim.put(request.suggestion_id)
        self._claims[request.suggestion_id] = claim
        self._requests[request.suggestion_id] = request
        self._launch(request.suggestion_id)

    def _launch(self, suggestion_id: int) -> None:
        attempt = self._attempts.get(suggestion_id, -1) + 1
        self._attempts[suggestion_id] = attempt
        future = self.client.submit(run_objective, self._requests[suggestion_id], pure=False,
                                    key=_key(suggestion_id, attempt))
        self._futures[suggestion_id] = future
        future.add_done_callback(lambda _: self.channel.put(TrialEnded(suggestion_id, attempt)))

    def post(self, message: Message) -> None:
        self.channel.put(message)

    def next_messages(self, timeout_s: float | None) -> list[Message]:
        """Block until a message arrives (or `timeout_s` passes), then take all that are waiting."""
        try:
            first = self.channel.get(timeout_s)
        except TimeoutError:
            return []
        return [first, *self.channel.get_waiting()]  # type: ignore[list-item]

    def waiting_messages(self) -> list[Message]:
        return self.channel.get_waiting()  # type: ignore[return-value]

    def forget(self, suggestion_id: int) -> None:
        """The trial is recorded: release its future (nothing is left for Dask to recompute)."""
        self._requests.pop(suggestion_id, None)
        self._attempts.pop(suggestion_id, None)
        future = self._futures.pop(suggestion_id, None)
        if future is not None:
            future.release()
        claim = self._claims.pop(suggestion_id, None)
        if claim is not None:
            claim.close()
        answers = self._answers.pop(suggestion_id, None)
        if answers is not None:
            answers.close()

    def settle(self, ended: TrialEnded) -> Settled | None:
        """Why an attempt's future ended without its trial's result; None when there is nothing to
        record: a stale attempt, or one whose worker died before the trial started (it is
        submitted again, since it never ran)."""
        future = self._futures.get(ended.suggestion_id)
        if future is None or self._attempts.get(ended.suggestion_id) != ended.attempt:
            return None
        if future.cancelled():
            return Settled(lost=False, detail="cancelled")
        try:
            ran = future.result()  # the future is done: this returns at once
        except KilledWorker as error:
            if self._claims[ended.suggestion_id].qsize():  # queued on the worker that died, never started
                future.release()
                self._launch(ended.suggestion_id)
                return None
            return Settled(lost=True, detail=f"its worker died while running it ({error.last_worker.address})")
        except Exception as error:
            return Settled(lost=True, detail=f"{type(error).__name__}: {error}")
        if ran:
            return Settled(lost=True, detail="its worker died before its result reached the flow")
        return Settled(lost=True, detail="its worker died; Dask started it again elsewhere, and paretune does not "
                                         "run a trial twice")

    def cancel(self, suggestion_id: int) -> bool:
        """Stop the trial: returns True when it had not started (and now never will)."""
        claim = self._claims.get(suggestion_id)
        never_started = bool(claim.get(batch=True)) if claim is not None else False
        future = self._futures.get(suggestion_id)
        if future is not None:
            future.cancel(force=True)
        return never_started

    def placement(self) -> dict[int, str]:
        """Suggestion id -> the worker the scheduler has its trial processing on."""
        ours = {future.key: i for i, future in self._futures.items()}
        return {ours[key]: worker for worker, keys in self.client.processing().items() for key in keys if key in ours}

    def restart_worker(self, address: str) -> None:
        """Kill a worker process to stop the trial thread it runs (a thread cannot be killed),
        in the background so the rest of the sweep goes on."""
        def restart() -> None:
            try:
                self.client.restart_workers([address], raise_for_error=False)
            except Exception as error:
                logger.warning("could not restart Dask worker %s: %s", address, error)

        thread = threading.Thread(target=restart, name=f"restart {address}", daemon=True)
        thread.start()
        self._restarts.append(thread)

    def wait_for_restarts(self, timeout_s: float) -> None:
        for thread in self._restarts:
            thread.join(timeout=timeout_s)


def _key(suggestion_id: int, attempt: int) -> str:
    return f"trial-{suggestion_id}" if attempt == 0 else f"trial-{suggestion_id}-attempt-{attempt}"
