"""The server's hold on the store: one writer thread, in-memory histories, the token gate.

    request thread --write(fn)--> queue --> writer thread: takes the queued writes (observations
    before suggestions, which run the optimizer), runs them inside one hold of the file (each its
    own transaction, for about a second at most), releases it (one checkpoint, one published
    copy), then answers each request

- **One writer.** Every write runs on the writer thread, through `paretune.lifecycle.TrialSession`;
  a burst of requests shares one hold of the file (up to MAX_HOLD_S), and a request is answered only once its
  transaction is committed and the copy readers see is published, so an acknowledged
  observation survives `kill -9` and the next read sees it. Between bursts the file is free for
  other processes (a tuning flow on another experiment, the CLI).
- **Reads** go to a read-only store (the published copy), in the request's thread.
- **Histories in memory.** A suggestion's search reads the experiment's history from `HistoryCache`,
  which loads it once and then only the observations newer than it holds; the server's own
  corrections and deletes of observations change it in place.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import itertools
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from paretune import optimizer
from paretune.lifecycle import TrialSession
from paretune.storage import DuckDBStorage, ObservationRecord, Storage
from paretune.storage.api_records import ApiToken, live_token_hashes, match_token
from paretune.storage.base import observation_of

log = logging.getLogger("paretune.server")
T = TypeVar("T")
MAX_WRITES_PER_HOLD = 256  # writes taken from the queue at most at once
MAX_HOLD_S = 1.0  # how long one hold of the file may go on taking writes: readers' data is at most about this old
TOKEN_TTL_S = 1.0  # a revoked token stops working within this long
UNKNOWN_TOKEN_REREAD_S = 0.05  # an unknown token re-reads the tokens (one just created), at most this often


@dataclass(order=True)
class _Write:
    """A queued write; ordered quick ones first, then by arrival."""

    searches: bool
    order: int
    work: Callable[[], Any] = field(compare=False)
    future: concurrent.futures.Future = field(compare=False)


class HistoryCache:
    """One experiment's history as the optimizer takes it, kept up to date incrementally.

    Appends by anyone are seen by comparing the count and the newest id with the store's; the
    server's own corrections and deletes update it in place (`replace`, `remove`); rows that
    vanished or arrived out of order otherwise make it reload. Only the server corrects
    observations: a correction made by another process would not be seen until a restart.
    """

    def __init__(self) -> None:
        self.history: list[optimizer.Observation] = []
        self.ids: list[int] = []  # each entry's observation id, ascending

    @property
    def last_id(self) -> int:
        return self.ids[-1] if self.ids else 0

    def current(self, storage: Storage, experiment_id: int) -> list[optimizer.Observation]:
        """The whole history: what is cached plus what was stored since (by anyone)."""
        for reload in (False, True):
            (row,) = storage.query("SELECT count(*) AS n, coalesce(max(id), 0) AS last FROM observations "
                                   "WHERE experiment_id = ?", [experiment_id])
            if row["n"] == len(self.history) and row["last"] == self.last_id:
                return self.history
            if reload:  # rows vanished or arrived out of order: start again
                self.history, self.ids = [], []
            self.add(storage.observations(experiment_id, after_id=self.last_id))  # type: ignore[call-arg]
        return self.history

    def add(self, records: list[ObservationRecord]) -> None:
        for record in records:
            if record.id > self.last_id:
                self.history.append(observation_of(record))
                self.ids.append(record.id)

    def replace(self, record: ObservationRecord) -> None:
        """A corrected observation: its entry, if cached, takes the new outcome."""
        index = bisect.bisect_left(self.ids, record.id)
        if index < len(self.ids) and self.ids[index] == record.id:
            self.history[index] = observation_of(record)

    def remove(self, observation_ids: list[int]) -> None:
        gone = set(observation_ids)
        kept = [(i, entry) for i, entry in zip(self.ids, self.history) if i not in gone]
        self.ids, self.history = [i for i, _ in kept], [entry for _, entry in kept]


class CachedSession(TrialSession):
    """A TrialSession whose search reads the history from memory."""

    def __init__(self, storage: Storage, experiment_id: int, cache: HistoryCache):
        super().__init__(storage, experiment_id)
        self.cache = cache

    def search_inputs(self) -> tuple[int, list[optimizer.Observation], list[dict[str, Any]]]:
        (row,) = self.storage.query(
            "SELECT count(*) AS made, coalesce(list(assignments) FILTER (WHERE state = 'open'), []) AS pending "
            "FROM suggestions WHERE experiment_id = ?", [self.experiment_id])
        return row["made"], self.cache.current(self.storage, self.experiment_id), [json.loads(a) for a in row["pending"]]


class StoreService:
    """The writing store, its writer thread, the reading store and the experiments' caches."""

    def __init__(self, db_path: str):
        self.db_path = db_path
        self.writer = DuckDBStorage(db_path)
        self.reader: DuckDBStorage | None = None
        self._reader_lock = threading.Lock()
        self._caches: dict[int, HistoryCache] = {}
        self._queue: queue.Queue[_Write | None] = queue.Queue()
        self._order = itertools.count()
        self._quick_arrived = threading.Event()  # a quick write was queued since the hold began
        self._thread = threading.Thread(target=self._write_loop, name="paretune-writer", daemon=True)
        self._thread.start()
        self._tokens: tuple[float, dict[str, ApiToken]] = (0.0, {})

    # -- writes -------------------------------------------------------------------------------------
    def write(self, work: Callable[[DuckDBStorage], T], *, searches: bool = False) -> concurrent.futures.Future[T]:
        """Run `work(store)` on the writer thread; the future resolves once it is committed and
        published. `searches`: it runs the optimizer, so quick writes (observations) go first."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Write(searches, next(self._order), lambda: work(self.writer), future))
        if not searches:
            self._quick_arrived.set()
        return future

    def session(self, experiment_id: int) -> CachedSession:
        """A session over the writing store (call on the writer thread)."""
        return CachedSession(self.writer, experiment_id, self._caches.setdefault(experiment_id, HistoryCache()))

    def _write_loop(self) -> None:
        """Hold after hold: take what is queued, quick writes first, and run one hold of the file."""
        waiting: list[_Write] = []
        while True:
            if not waiting:
                waiting.append(self._queue.get())
            self._quick_arrived.clear()  # before draining: a quick write queued after it is seen
            while len(waiting) < MAX_WRITES_PER_HOLD:
                try:
                    waiting.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(item is None for item in waiting):
                return
            waiting.sort()
            self._hold(waiting)

    def _hold(self, waiting: list[_Write]) -> None:
        """Run queued writes in one hold of the file and answer them once it is released.

        A hold runs the quick writes waiting, or searches one after another while no quick
        write arrives, for MAX_HOLD_S at most (one write at least): an observation never waits
        for more than the search in progress, and readers see data about a second old at most.
        """
        done: list[tuple[concurrent.futures.Future, bool, Any]] = []
        try:
            with self.writer.batch():
                began = time.monotonic()
                searching = waiting[0].searches
                while waiting and (not done or (waiting[0].searches == searching and not self._quick_arrived.is_set()
                                                and time.monotonic() - began < MAX_HOLD_S)):
                    write = waiting.pop(0)
                    try:
                        done.append((write.future, True, write.work()))
                    except Exception as error:  # this request's own failure, answered to it alone
                        done.append((write.future, False, error))
        except Exception as error:  # the file could not be taken, checkpointed or published
            log.exception("the write session failed")
            done = [(future, False, error) for future, _, _ in done]
        for future, ok, value in done:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    # -- reads ----------------------------------------------------------------------------------------
    def read(self, work: Callable[[DuckDBStorage], T]) -> T:
        """Run `work(store)` on the published copy (call from a worker thread)."""
        with self._reader_lock:
            if self.reader is None:
                self.reader = DuckDBStorage(self.db_path, read_only=True)
            return work(self.reader)

    # -- tokens ---------------------------------------------------------------------------------------
    def token(self, presented: str) -> ApiToken | None:
        """The live token `presented` is; tokens are re-read at most every TOKEN_TTL_S, and at once
        when one is not known (a token created since)."""
        read_at, live = self._tokens
        age = time.monotonic() - read_at
        found = match_token(presented, live) if age < TOKEN_TTL_S else None
        if found is None and age > UNKNOWN_TOKEN_REREAD_S:
            live = self.read(live_token_hashes)
            self._tokens = (time.monotonic(), live)
            found = match_token(presented, live)
        return found

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.writer.close()
        if self.reader is not None:
            self.reader.close()
