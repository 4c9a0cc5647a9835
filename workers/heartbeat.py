"""Liveness heartbeats for every activity, so a crashed worker is noticed in seconds.

The vendor SDKs block on one HTTP call at a time and cannot heartbeat themselves. Without a
heartbeat, the server learns that a SIGKILLed worker's activity is gone only when its start-to-close
timeout (30-60 s) expires, and the deal stalls that long. This interceptor heartbeats from the
worker's event loop while the activity runs on the thread pool: heartbeats stop exactly when the
process dies, so the server retries the step after the (short) heartbeat timeout, while a slow but
live call is still bounded by start-to-close.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

# Heartbeat this many times per heartbeat timeout, so one late beat under load is not a timeout.
BEATS_PER_TIMEOUT = 4


class _HeartbeatWhileRunning(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            return await self.next.execute_activity(input)
        interval = max(timeout.total_seconds() / BEATS_PER_TIMEOUT, 0.2)

        async def beat() -> None:
            while True:
                await asyncio.sleep(interval)
                activity.heartbeat()

        beating = asyncio.create_task(beat())
        try:
            return await self.next.execute_activity(input)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating


class LivenessHeartbeats(Interceptor):
    """Worker interceptor: heartbeat every activity that has a heartbeat timeout."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HeartbeatWhileRunning(next)
