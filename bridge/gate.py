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

Coming back, it takes its slot if one is free and otherwise runs on beside the slots,
owed one: it never waits to come back. It may hold what a slot holder waits for (a row
lock on PostgreSQL, SQLite's write lock), and waiting would then be waiting for itself.
A holder that leaves hands its slot to a thread beside instead of giving it back, so
no new request enters while any runs beside: at most ``slots`` requests run, plus those
that came back from a wait at the same moment, until the first holders leave. The gate
is only ever waited for at a request's start, holding nothing.
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


class _Place:
    """Where one thread stands at one gate: inside (a request under way), holding a slot."""

    __slots__ = ("held", "inside")

    def __init__(self) -> None:
        self.held = False
        self.inside = False


class Gate:
    """``slots`` threads at a time; 0 lets every thread through (no gate).

    A thread that comes back from a wait to a taken slot runs on beside the slots and is
    owed one: a holder that leaves (or waits) hands its slot to a thread beside instead
    of giving it back, so no new request enters while any runs beside. At most ``slots``
    requests run with new ones waiting, plus those that came back from a wait at the
    same time, and the surplus ends as they get slots or leave."""

    def __init__(self, slots: int = 0):
        if slots < 0:
            raise ValueError("a gate has 0 slots (none) or more")
        self.slots = slots
        # One slot is a plain lock, taken and given back in C without the interpreter;
        # threading.Semaphore is Python code under a Condition.
        self._lock: threading.Lock | threading.Semaphore | None = (
            None if slots == 0 else threading.Lock() if slots == 1 else threading.Semaphore(slots))
        self._mine = threading.local()
        self._beside: list[_Place] = []  # threads owed a slot, in the order they came back
        self._handing = threading.Lock()  # guards _beside and every slot given up or taken back

    @property
    def enabled(self) -> bool:
        return self._lock is not None

    def _place(self) -> _Place:
        place: _Place | None = getattr(self._mine, "place", None)
        if place is None:
            place = self._mine.place = _Place()
        return place

    def holds(self) -> bool:
        """Whether this thread holds a slot."""
        return self._place().held

    def beside(self) -> int:
        """How many threads run beside the slots now (owed one)."""
        return len(self._beside)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A slot for this thread for the block (a request on a hot path). Re-entrant: a
        thread inside already does not wait again."""
        place = self._place()
        if self._lock is None or place.inside:
            yield
            return
        self._lock.acquire()  # the only wait for a slot: at a request's start, holding nothing
        place.held = place.inside = True
        outer = getattr(_HOLDING, "gate", None)
        _HOLDING.gate = self
        try:
            yield
        finally:
            _HOLDING.gate = outer
            place.inside = False
            self._give_up(place)

    @contextmanager
    def released(self) -> Iterator[None]:
        """This thread's slot let go for the block (a wait on something else than the CPU),
        taken back after it if it is free, else the thread goes on beside the slots (it
        must not wait for a slot holder that may wait for what this thread holds) until
        a holder hands it one; nothing happens where the thread is not inside."""
        place = self._place()
        if self._lock is None or not place.inside:
            yield
            return
        self._give_up(place)
        try:
            yield
        finally:
            self._come_back(place)

    def _give_up(self, place: _Place) -> None:
        """The slot ``place`` holds goes to the first thread beside, or back to the gate;
        a thread beside (holding none) is no longer owed one."""
        assert self._lock is not None
        with self._handing:
            if place.held:
                place.held = False
                if self._beside:
                    self._beside.pop(0).held = True
                else:
                    self._lock.release()
            elif place in self._beside:
                self._beside.remove(place)

    def _come_back(self, place: _Place) -> None:
        """A free slot taken at once, or a place beside the slots: never a wait."""
        assert self._lock is not None
        with self._handing:
            if self._lock.acquire(blocking=False):
                place.held = True
            else:
                self._beside.append(place)
