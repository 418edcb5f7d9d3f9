"""What an API request that starts a run (a sync, a job run) may ask: how long to wait
for the outcome before the answer is 202 and the run goes on in the run service
(bridge.jobs.runner)."""

from __future__ import annotations

from pydantic import BaseModel, Field

MAX_WAIT = 300.0


class WaitQuery(BaseModel):
    wait: float = Field(default=10.0, ge=0, le=MAX_WAIT,
                        description="seconds to wait for the outcome before answering 202 (the run goes on)")
