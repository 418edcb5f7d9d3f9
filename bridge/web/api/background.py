"""Work started by an API request that may outlast it (a sync, a job run).

The work runs in a daemon thread; the request waits up to ``wait`` seconds and
then answers either with the outcome or with 202 (the caller polls the run). A
process that ends mid-run leaves the run to its usual clean-up: a sync's lease
expires and the next sync closes the run as abandoned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")
MAX_WAIT = 300.0


class WaitQuery(BaseModel):
    wait: float = Field(default=10.0, ge=0, le=MAX_WAIT,
                        description="seconds to wait for the outcome before answering 202 (the run goes on)")


@dataclass
class Background(Generic[R]):
    """One piece of work in its own thread: ``done`` once it returned or raised."""

    name: str
    work: Callable[[], R]
    done: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    error: BaseException | None = None

    def start(self) -> Background[R]:
        threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # handed to the waiting request, or logged when nobody waits
            self.error = exc
        finally:
            self.done.set()

    def wait(self, seconds: float) -> bool:
        finished = self.done.wait(seconds)
        if not finished:
            threading.Thread(target=self._log_late_error, name=f"{self.name}-watch", daemon=True).start()
        return finished

    def _log_late_error(self) -> None:
        self.done.wait()
        if self.error is not None:
            log.error("background %s failed after its request answered: %s", self.name, self.error,
                      exc_info=self.error)


def poll(find: Callable[[], T | None], seconds: float, every: float = 0.05) -> T | None:
    """``find()`` until it returns something or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        found = find()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(every)
