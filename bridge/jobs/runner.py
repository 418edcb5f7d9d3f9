"""The run service: it owns the background work of a process, the LDAP syncs and job
runs started by the API and by the scheduler.

Every run is recorded before it starts: ``start_sync`` and ``start_job`` take what the
run needs (a sync takes its source's lock), write the run's row and return a ``Flight``
that names it, so the API answers with the run's id at once; the work goes on in a
thread this service starts and tracks. A job started by hand runs where the scheduler's
leader runs: on a replica that does not lead it is refused, naming the leader.

``stop`` is called by the daemon on SIGTERM: no new run starts; the runs in flight get
until the deadline (``server.shutdown_timeout`` after the signal) to finish; then a sync
stops after its current batch and records itself interrupted, and a run that still has
not ended is marked interrupted by this service. Either way the record says so: never a
half-run left ``running``. (A batch is one transaction: a process that ends inside one
leaves the store as it was before it.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bridge.jobs.leader import current_leader
from bridge.jobs.registry import JobFailed, JobSpec
from bridge.services import runs
from bridge.services.errors import Conflict, ServiceUnavailable
from bridge.services.runs import RunInterrupted
from bridge.store.models import JobOutcome

if TYPE_CHECKING:
    from bridge.ldap.plan import SyncResult
    from bridge.runtime import Runtime

log = logging.getLogger(__name__)

#: after the deadline, how long an interrupted sync gets to finish its batch and say so
INTERRUPT_GRACE_SECONDS = 5.0

Kind = Literal["sync", "job"]


class NotLeader(Conflict):
    """A job started by hand on a replica that does not run the scheduled jobs."""

    code = "notLeader"


class JobBusy(Conflict):
    """The job is running in this process already."""

    code = "jobBusy"


class Stopping(ServiceUnavailable):
    """The process is stopping: no new run starts."""

    code = "stopping"


@dataclass
class Flight:
    """One run at work: its kind and recorded id, and once ``done``, its result or error."""

    kind: Kind
    name: str
    run_id: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    interrupted: bool = False

    def wait(self, seconds: float | None = None) -> bool:
        return self.done.wait(seconds)


class RunService:
    def __init__(self, rt: Runtime):
        self.rt = rt
        #: set at the stop deadline: a sync stops after its current batch
        self.interrupting = threading.Event()
        self._lock = threading.Lock()
        self._flights: dict[tuple[Kind, int], Flight] = {}
        self._jobs: set[str] = set()  # the jobs running here, claimed before their row is written
        self._starting = 0  # runs past the stopping check, not yet launched: stop() waits for them
        self._started = threading.Condition(self._lock)
        #: syncs running inside a job's flight (a scheduled sync): interrupted with it
        self._inner_syncs: set[int] = set()
        #: set when the process starts stopping: no new run, and no request waits on
        self.stopping = threading.Event()

    # -- starting ------------------------------------------------------------------

    def start_sync(self, source: str, *, full: bool = False, dry_run: bool = False,
                   approve_deletions: bool = False) -> Flight:
        """Take the source's lock, record the run, and sync in the background. Raises
        UnknownSource, SyncBusy and NothingToApprove (nothing started then)."""
        from bridge.ldap.sync import prepare_sync

        with self._starting_run():
            prepared = prepare_sync(self.rt, source, full=full, dry_run=dry_run,
                                    approve_deletions=approve_deletions, interrupted=self.interrupting.is_set)
            return self._launch("sync", source, prepared.run_id, prepared.execute)

    @contextmanager
    def tracking_sync(self, run_id: int) -> Iterator[None]:
        """A sync run in the caller's thread (a scheduled sync job, the CLI): should the
        process stop before it ends, it is marked interrupted with the job around it."""
        with self._lock:
            self._inner_syncs.add(run_id)
        try:
            yield
        finally:
            with self._lock:
                self._inner_syncs.discard(run_id)

    def start_job(self, spec: JobSpec, *, by_hand: bool = True) -> Flight:
        """Record a run of ``spec`` and run it in the background. By hand (the API), it is
        refused on a replica that does not lead while another does (NotLeader), and
        while the same job runs in this process (JobBusy)."""
        with self._starting_run():
            if by_hand:
                self._refuse_unless_leading(spec)
            with self._lock:  # checked and claimed at once: two requests racing get one run
                if spec.name in self._jobs:
                    raise JobBusy(f"{spec.name} is running on this replica already")
                self._jobs.add(spec.name)
            try:
                run_id = runs.start_job(self.rt.store, spec.name, self.rt.replica, self.rt.clock())
                return self._launch("job", spec.name, run_id, lambda: self._job(spec, run_id))
            except BaseException:
                with self._lock:
                    self._jobs.discard(spec.name)
                raise

    def run_scheduled(self, spec: JobSpec) -> None:
        """The scheduler's entry: only on the leader; a turn is skipped while the job
        still runs (started by hand) or the process is stopping."""
        leadership = self.rt.leadership
        if leadership is not None and not leadership.is_leader():
            log.debug("job %s skipped: another replica leads", spec.name, extra={"job": spec.name})
            return
        try:
            flight = self.start_job(spec, by_hand=False)
        except (JobBusy, Stopping) as exc:
            log.info("job %s skipped: %s", spec.name, exc, extra={"job": spec.name})
            return
        flight.wait()

    @contextmanager
    def _starting_run(self) -> Iterator[None]:
        """Between the stopping check and the launch: a stop that begins meanwhile waits
        for the run to be launched (and then for the run), so none starts behind its back."""
        with self._lock:
            if self.stopping.is_set():
                raise Stopping("this replica is stopping: start the run again once it is back")
            self._starting += 1
        try:
            yield
        finally:
            with self._lock:
                self._starting -= 1
                self._started.notify_all()

    def _refuse_unless_leading(self, spec: JobSpec) -> None:
        leadership = self.rt.leadership
        if leadership is not None and leadership.is_leader():
            return
        lease = current_leader(self.rt.store)
        if lease is not None and lease.holder != self.rt.replica and lease.expires_at > self.rt.clock():
            raise NotLeader(f"{spec.name} runs on the replica that leads the scheduled jobs, "
                            f"{lease.holder}: start it there")

    def _launch(self, kind: Kind, name: str, run_id: int, work: Callable[[], Any]) -> Flight:
        flight = Flight(kind, name, run_id)
        with self._lock:
            self._flights[(kind, run_id)] = flight
        thread = threading.Thread(target=self._fly, args=(flight, work), name=f"run {kind}:{name}", daemon=True)
        thread.start()
        return flight

    def _fly(self, flight: Flight, work: Callable[[], Any]) -> None:
        try:
            flight.result = work()
        except BaseException as exc:  # handed to whoever waits; logged when nobody does
            flight.error = exc
            log.error("%s %s (run %d) failed: %s", flight.kind, flight.name, flight.run_id, exc, exc_info=exc)
        finally:
            with self._lock:
                self._flights.pop((flight.kind, flight.run_id), None)
                if flight.kind == "job":
                    self._jobs.discard(flight.name)
            flight.done.set()

    def _job(self, spec: JobSpec, run_id: int) -> JobOutcome:
        """Run a recorded job; its failure is recorded, not raised."""
        outcome, counts, message = JobOutcome.ok, {}, None
        try:
            counts = spec.run(self.rt)
        except RunInterrupted as exc:
            outcome, message = JobOutcome.interrupted, str(exc)
        except JobFailed as exc:
            log.warning("job %s failed: %s", spec.name, exc, extra={"job": spec.name})
            outcome, message = JobOutcome.failed, str(exc)
        except Exception as exc:  # a job's failure must not kill the scheduler
            log.exception("job %s failed", spec.name, extra={"job": spec.name})
            outcome, message = JobOutcome.failed, f"{type(exc).__name__}: {exc}"
        if not runs.finish_job(self.rt.store, run_id, outcome, counts, message, self.rt.clock()):
            outcome = JobOutcome.interrupted  # marked so by stop() while it ran on
        log.info("job %s %s", spec.name, outcome, extra={"job": spec.name, "outcome": outcome, "counts": counts})
        self.rt.metrics.job_runs.labels(spec.name, outcome).inc()
        return outcome

    # -- in flight and stopping ------------------------------------------------------

    def in_flight(self) -> list[Flight]:
        with self._lock:
            return list(self._flights.values())

    def wait(self, flight: Flight, seconds: float) -> bool:
        """Wait for ``flight`` as a request does: up to ``seconds``, and no longer once the
        process is stopping (the request answers 202 and the listener can close)."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if flight.wait(min(left, 0.1)):
                return True
        return flight.done.is_set()

    def begin_stop(self) -> None:
        """No new run from now on (refused with 503 Stopping); waiting requests answer."""
        self.stopping.set()

    def stop(self, deadline: float) -> None:
        """Let the runs in flight finish until ``deadline`` (``time.monotonic``), then
        interrupt them; what has not ended after a short grace is marked interrupted."""
        self.begin_stop()
        with self._lock:  # the runs past the stopping check are launched (or refused) first
            self._started.wait_for(lambda: self._starting == 0, max(0.0, deadline - time.monotonic()))
        self._wait_all(deadline)
        if not self.in_flight():
            return
        self.interrupting.set()
        self._wait_all(time.monotonic() + INTERRUPT_GRACE_SECONDS)
        for flight in self.in_flight():
            self._mark_interrupted(flight)
        with self._lock:
            inner = sorted(self._inner_syncs)
        for run_id in inner:
            self._mark_interrupted(Flight("sync", "inside a job", run_id))

    def _wait_all(self, deadline: float) -> None:
        for flight in self.in_flight():
            flight.wait(max(0.0, deadline - time.monotonic()))

    def _mark_interrupted(self, flight: Flight) -> None:
        why = "interrupted: the process stopped before the run ended"
        now = self.rt.clock()
        try:
            marked = (runs.interrupt_sync if flight.kind == "sync" else runs.interrupt_job)(
                self.rt.store, flight.run_id, why, now)
        except Exception:  # noqa: BLE001 - the database is away: closed as abandoned later (a sync by the
            # next sync of its source, a job by the replica that takes the leader lease over)
            log.exception("could not mark %s %s (run %d) interrupted", flight.kind, flight.name, flight.run_id)
            return
        if marked:
            log.warning("%s %s (run %d) %s", flight.kind, flight.name, flight.run_id, why,
                        extra={"run": flight.run_id})
        flight.interrupted = marked
        flight.done.set()


def sync_result(flight: Flight) -> SyncResult:
    """The result of a finished sync flight (raising what the sync raised)."""
    if flight.error is not None:
        raise flight.error
    result: SyncResult = flight.result
    return result
