"""The clock the accounts code reads: injectable, so tests control expiry and lockout."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.runtime import Runtime

from bridge.clock import Clock

__all__ = ["Clock", "clock_of"]


def clock_of(rt: Runtime) -> Clock:
    """The runtime's clock (``Runtime.clock``: the real UTC time, or a test's)."""
    return rt.clock
