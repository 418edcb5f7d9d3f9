"""The hot-path gate: how many request threads run the hot paths' Python at once.

Python runs one thread at a time (the GIL), and every SQLite call, socket write and
lock wait hands the interpreter to another thread. With 8 or 16 request threads all
busy on short SCIM or check requests, each of those hand-overs wakes a thread that
must win the interpreter back: measured with bench/scim_bench.py (8 clients, 16
threads, SQLite) a ``userName eq`` lookup cost the server 1.49 ms of CPU, 0.94 ms with
one request thread; a page of 100 users 10-13 ms, 4.9 ms with one. The gate keeps the
threads and lets ``slots`` of them at a time serve a hot-path request
(``server.hot_path_threads``, "auto": 1 on SQLite, 2 on PostgreSQL; bridge.web.server
gives SCIM and the check API a gate each, within their own pools of threads); the others
wait on a lock, asleep, instead of competing for the interpreter.

A gated request lets go of its slot while it waits on something other than the CPU,
wherever dirbridge itself waits: for SQLite's write lock (bridge.store.db, of whichever
gate: a check's token write waits there too) or its busy timeout, for a password hash
or a check against the password history, for a write-back to a directory. A thread
that holds no slot (a job, an ungated request) lets go of nothing.

Coming back, it takes its slot if one is free and otherwise runs on beside the slots
(until its request ends): it never waits to come back. It may hold what a slot holder
waits for (a row lock on PostgreSQL, SQLite's write lock), and waiting would then be
waiting for itself. So at most ``slots`` requests enter at a time, and those that come
back from a wait may briefly add to them; the gate is only ever waited for at a
request's start, holding nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# The gate each thread holds a slot of, if any: what a wait in the store lets go of, whichever
# hot path the thread serves (a check's token write waits for the write lock too).
_HOLDING = threading.local()


@contextmanager
def slot_released() -> Iterator[None]:
    """The slot this thread holds, of whichever gate, let go for the block (a wait on
    something else than the CPU); nothing happens where the thread holds none."""
    gate: Gate | None = getattr(_HOLDING, "gate", None)
    if gate is None:
        yield
        return
    with gate.released():
        yield


def holding_slot() -> bool:
    """Whether this thread holds a slot of any gate (what ``slot_released`` would let go)."""
    gate: Gate | None = getattr(_HOLDING, "gate", None)
    return gate is not None and gate.holds()


class Gate:
    """``slots`` threads at a time; 0 lets every thread through (no gate)."""

    def __init__(self, slots: int = 0):
        if slots < 0:
            raise ValueError("a gate has 0 slots (none) or more")
        self.slots = slots
        # One slot is a plain lock, taken and given back in C without the interpreter;
        # threading.Semaphore is Python code under a Condition.
        self._lock: threading.Lock | threading.Semaphore | None = (
            None if slots == 0 else threading.Lock() if slots == 1 else threading.Semaphore(slots))
        self._mine = threading.local()

    @property
    def enabled(self) -> bool:
        return self._lock is not None

    def holds(self) -> bool:
        """Whether this thread holds a slot."""
        return bool(getattr(self._mine, "held", False))

    def _inside(self) -> bool:
        """Whether this thread is inside ``held()`` (with a slot, or beside them after a wait)."""
        return bool(getattr(self._mine, "inside", False))

    @contextmanager
    def held(self) -> Iterator[None]:
        """A slot for this thread for the block (a request on a hot path). Re-entrant: a
        thread inside already does not wait again."""
        if self._lock is None or self._inside():
            yield
            return
        self._lock.acquire()
        self._mine.held = self._mine.inside = True
        outer = getattr(_HOLDING, "gate", None)
        _HOLDING.gate = self
        try:
            yield
        finally:
            _HOLDING.gate = outer
            self._mine.inside = False
            if self._mine.held:
                self._mine.held = False
                self._lock.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """This thread's slot let go for the block (a wait on something else than the CPU),
        taken back after it if it is free, else the thread goes on beside the slots (it
        must not wait for a slot holder that may wait for what this thread holds);
        nothing happens where the thread holds none."""
        if self._lock is None or not self.holds():
            yield
            return
        self._mine.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._mine.held = self._lock.acquire(blocking=False)
