"""The clock the accounts code reads: injectable, so tests control expiry and lockout."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from bridge.store.models import utcnow

if TYPE_CHECKING:
    from bridge.runtime import Runtime

Clock = Callable[[], datetime]
EXTRAS_KEY = "clock"


def clock_of(rt: Runtime) -> Clock:
    """The runtime's clock: ``rt.extras["clock"]`` when a test set one, else the real UTC time."""
    found = rt.extras.get(EXTRAS_KEY)
    return found if found is not None else utcnow
