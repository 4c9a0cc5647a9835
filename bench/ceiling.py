"""The ceiling: a no-op deal with the real deal's shape, run by its own worker process.

One no-op remote activity stands for each outside-system step of the real deal (the contract
before the signature; Closed Won, customer, subscription, invoice, provisioning and the CRM
write-back after it), with the same wait for a signature in between. Whatever this reaches on the
same server is what orchestration alone allows; the product's throughput is compared against it.

``python -m bench.ceiling --address HOST:PORT --task-queue Q`` runs the worker until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.worker import Worker

WORKFLOW_NAME = "CeilingDeal"
SIGNAL_SIGNED = "signed"
BEFORE_SIGNATURE = ("send_contract",)
AFTER_SIGNATURE = (
    "mark_closed_won",
    "create_billing_customer",
    "create_subscription",
    "send_first_invoice",
    "provision_product",
    "write_back_billing_ids",
)
# The same search attribute the real deal uses, so the bench counts waiting deals the same way.
STAGE_KEY = SearchAttributeKey.for_keyword("QtcStage")
AWAITING = "awaiting_signature"
STARTED_MARKER = "ceiling worker started"


@activity.defn(name="ceiling_step")
async def ceiling_step(step: str) -> str:
    return step


@workflow.defn(name=WORKFLOW_NAME)
class CeilingDeal:
    def __init__(self) -> None:
        self._signed = False

    @workflow.run
    async def run(self) -> None:
        for step in BEFORE_SIGNATURE:
            await self._step(step)
        workflow.upsert_search_attributes([STAGE_KEY.value_set(AWAITING)])
        await workflow.wait_condition(lambda: self._signed)
        for step in AFTER_SIGNATURE:
            await self._step(step)

    async def _step(self, step: str) -> None:
        await workflow.execute_activity(
            ceiling_step,
            step,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )

    @workflow.signal(name=SIGNAL_SIGNED)
    def signed(self) -> None:
        self._signed = True


async def run_worker(address: str, task_queue: str, max_cached: int) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[CeilingDeal],
        activities=[ceiling_step],
        max_cached_workflows=max_cached,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        sys.stdout.write(f"{STARTED_MARKER} on {task_queue}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--max-cached", type=int, default=2000)
    args = parser.parse_args(argv)
    asyncio.run(run_worker(args.address, args.task_queue, args.max_cached))


if __name__ == "__main__":
    main()
