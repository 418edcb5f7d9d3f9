"""The hot-path gate (bridge.gate): at most ``slots`` threads inside, a waiter lets go."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.gate import Gate


def _inside_at_once(gate: Gate, threads: int = 6, rounds: int = 30) -> int:
    """The most threads seen inside ``gate.held()`` at the same time."""
    inside = most = 0
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        nonlocal inside, most
        start.wait()
        for _ in range(rounds):
            with gate.held():
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.001)
                with lock:
                    inside -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return most


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_no_more_threads_than_slots_are_inside(slots):
    most = _inside_at_once(Gate(slots))
    assert most == slots  # never more; and with six threads queueing, every slot gets used


def test_without_slots_every_thread_goes_through():
    assert _inside_at_once(Gate(0)) > 1


def test_held_is_reentrant_and_knows_its_thread():
    gate = Gate(1)
    assert not gate.holds()
    with gate.held():
        assert gate.holds()
        with gate.held():  # a nested hot-path call does not wait for itself
            assert gate.holds()
        assert gate.holds()
        seen_elsewhere: list[bool] = []
        other = threading.Thread(target=lambda: seen_elsewhere.append(gate.holds()))
        other.start()
        other.join()
        assert seen_elsewhere == [False]
    assert not gate.holds()


def test_released_lets_a_waiting_thread_in_and_takes_the_slot_back():
    gate = Gate(1)
    entered = threading.Event()

    def waiter() -> None:
        with gate.held():
            entered.set()

    with gate.held():
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not entered.wait(0.2)  # the slot is taken
        with gate.released():
            assert not gate.holds()
            assert entered.wait(5)  # while this thread waits elsewhere, the other one runs
            thread.join(timeout=5)
        assert gate.holds()  # taken back before the block goes on
    assert not gate.holds()


def test_released_is_nothing_for_a_thread_without_a_slot():
    gate = Gate(1)
    taken = threading.Event()
    done = threading.Event()

    def holder() -> None:
        with gate.held():
            taken.set()
            done.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(5)
    with gate.released():  # a job's thread: holds nothing, gives nothing back, takes nothing
        assert not gate.holds()
    done.set()
    thread.join(timeout=5)


def test_an_error_inside_gives_the_slot_back():
    gate = Gate(1)
    with pytest.raises(RuntimeError), gate.held():
        raise RuntimeError("boom")
    assert not gate.holds()
    with gate.held():  # not left taken
        pass


def test_negative_slots_are_refused():
    with pytest.raises(ValueError):
        Gate(-1)


def test_coming_back_never_waits_for_a_holder_that_waits_for_this_thread():
    """A request lets go of its slot for a wait while it holds a lock (a PostgreSQL row
    lock, say); the request that takes the slot waits for that lock. Coming back, the first
    must not wait for the slot: it runs on beside the slots, and both finish (waiting would
    be a deadlock, with no timeout to end it)."""
    gate = Gate(1)
    row_lock = threading.Lock()
    entered, finished = threading.Event(), threading.Event()

    def second() -> None:
        with gate.held():
            entered.set()
            with row_lock:  # waits for the first request's lock, holding the slot
                finished.set()

    first_done = threading.Event()

    def first() -> None:
        with gate.held(), row_lock:
            with gate.released():  # a write-back, a password history check ...
                threading.Thread(target=second, daemon=True).start()  # daemon: a deadlock fails, not hangs
                assert entered.wait(5)
            assert not gate.holds()  # the slot was taken: it runs on beside it
        first_done.set()

    threading.Thread(target=first, daemon=True).start()
    assert first_done.wait(5)
    assert finished.wait(5)


def test_a_thread_beside_the_slots_gives_back_no_slot_it_did_not_take():
    gate = Gate(1)
    holder_in, holder_go, third_in = threading.Event(), threading.Event(), threading.Event()

    def holder() -> None:
        with gate.held():
            holder_in.set()
            holder_go.wait(5)

    def third() -> None:
        with gate.held():
            third_in.set()

    with gate.held():
        with gate.released():
            threading.Thread(target=holder).start()
            assert holder_in.wait(5)
    # this thread ran beside the slots and has left: the holder's slot is still the holder's
    threading.Thread(target=third).start()
    assert not third_in.wait(0.3)
    holder_go.set()
    assert third_in.wait(5)


def test_a_holder_hands_its_slot_to_a_thread_beside_and_new_requests_wait_meanwhile():
    """One slot: A waits (slot let go), B takes the slot, A comes back beside it. No new
    request C enters while A runs beside; when B leaves, its slot goes to A (not to C),
    and C enters only once A leaves: the gate's bound holds again as soon as it can."""
    gate = Gate(1)
    b_in, b_go, a_back, a_go, c_in = (threading.Event() for _ in range(5))
    seen: dict[str, object] = {}

    def b() -> None:
        with gate.held():
            b_in.set()
            b_go.wait(5)

    def c() -> None:
        with gate.held():
            c_in.set()

    def a() -> None:
        with gate.held():
            with gate.released():
                threading.Thread(target=b, daemon=True).start()
                assert b_in.wait(5)
            seen["beside"] = (gate.holds(), gate.beside())
            a_back.set()
            a_go.wait(5)
            seen["handed"] = gate.holds()

    threading.Thread(target=a, daemon=True).start()
    assert a_back.wait(5)
    assert seen["beside"] == (False, 1)
    threading.Thread(target=c, daemon=True).start()
    assert not c_in.wait(0.3)  # A runs beside B: no third request
    b_go.set()  # B leaves: its slot is A's
    time.sleep(0.2)
    assert not c_in.is_set()
    a_go.set()
    assert c_in.wait(5)  # A leaves with the slot B handed it, and C enters
    assert seen["handed"] is True
    assert gate.beside() == 0 and not gate.holds()
