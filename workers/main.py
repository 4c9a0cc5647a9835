"""The worker process: ``DealWorkflow`` and the activities of the vendors the settings choose.

Every vendor client is built once per process (``workers.compose``) and shared by the port
implementations, whose bound methods are registered next to ``DealWorkflow`` and its local
activities. The blocking SDKs
(simple-salesforce, docusign-esign, Stripe's requests client, the provisioning httpx client) run in
sync activities on one thread pool, never on the event loop.

Shutdown: SIGTERM or SIGINT stops polling, lets in-flight activities finish within
``worker_graceful_shutdown_s`` and then exits. A worker killed harder than that (SIGKILL, a lost
machine) loses nothing either: the server retries the attempt after its start-to-close timeout, and
every activity is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from runtime.search_attributes import SEARCH_ATTRIBUTES
from runtime.settings import Settings
from runtime.temporal import connect, metrics_runtime
from runtime.tracing import configure_tracing
from workers.compose import build_activities
from workers.failures import CompactFailures
from workers.heartbeat import LivenessHeartbeats
from workflows.deal import LOCAL_ACTIVITIES, DealWorkflow

log = structlog.get_logger(__name__)


async def ensure_search_attributes(client: Client) -> None:
    """Register the deal's search attributes on the namespace when they are missing.

    Without them every ``upsert_search_attributes`` fails its workflow task, which Temporal retries
    forever: deals would hang instead of failing. Temporal Cloud refuses this call from a worker
    (they are added with ``tcld`` or the Cloud UI); the worker then logs what to do and carries on.
    """
    namespace = client.namespace
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {
            key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
            for key in SEARCH_ATTRIBUTES
            if key.name not in existing.custom_attributes
        }
        if not missing:
            return
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
        log.info("search attributes registered", namespace=namespace, names=sorted(missing))
    except RPCError as err:
        if err.status == RPCStatusCode.ALREADY_EXISTS:
            return  # another worker registered them between our list and our add
        if err.status not in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            raise
        log.warning(
            "cannot register search attributes; add them to the namespace yourself",
            namespace=namespace,
            error=err.message,
            needed={key.name: key.indexed_value_type.name.title() for key in SEARCH_ATTRIBUTES},
            how="tcld namespace search-attributes add, or the Temporal Cloud UI",
        )


def build_worker(
    settings: Settings,
    client: Client,
    activities: list[Callable[..., Any]],
    executor: ThreadPoolExecutor,
) -> Worker:
    """The deal worker: ``DealWorkflow`` and its activities on the settings' task queue."""
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[DealWorkflow],
        activities=activities,
        activity_executor=executor,
        # One activity per thread: more would queue inside the pool where the server cannot see it.
        # Remote and local activities (the steps after the signature) each get this many slots,
        # and the pool has a thread for every slot of both (run_worker).
        max_concurrent_activities=settings.worker_activity_threads,
        max_concurrent_local_activities=settings.worker_activity_threads,
        max_cached_workflows=settings.worker_max_cached_workflows,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_s),
        interceptors=[LivenessHeartbeats(), CompactFailures()],
    )


CONNECT_TIMEOUT_S = 10.0


class WorkerStartError(RuntimeError):
    """The worker could not start or stopped for good; the message says why in one line."""


async def run_worker(
    settings: Settings, client: Client | None = None, *, stop: asyncio.Event | None = None
) -> None:
    """Run the deal worker until ``stop`` is set, or SIGTERM/SIGINT arrives when ``stop`` is None.

    Logs ``worker started`` once the server has accepted the worker (namespace checked, pollers
    running). In-flight activities get ``worker_graceful_shutdown_s`` to finish on shutdown.

    Raises:
        WorkerStartError: Temporal cannot be reached, or refused the worker (a namespace that
            does not exist, a server gone for good).
    """
    configure_tracing("qtc-worker")
    if client is None:
        runtime = None
        if settings.worker_metrics_port is not None:
            runtime = metrics_runtime(
                f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
            )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                client = await connect(settings, runtime=runtime)
        except (RuntimeError, TimeoutError, RPCError, ValueError) as exc:
            raise WorkerStartError(
                f"cannot reach Temporal at {settings.temporal_address}: {_first_line(exc)}"
            ) from exc
    try:
        await _run(settings, client, stop)
    except (RuntimeError, RPCError) as exc:
        raise WorkerStartError(f"worker stopped: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def _run(settings: Settings, client: Client, stop: asyncio.Event | None) -> None:
    if settings.worker_register_search_attributes:
        await ensure_search_attributes(client)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    with (
        contextlib.ExitStack() as closing,
        ThreadPoolExecutor(
            max_workers=2 * settings.worker_activity_threads, thread_name_prefix="qtc-activity"
        ) as executor,
    ):
        try:
            activities = build_activities(settings, closing)
        except ValueError as exc:
            # A vendor's configuration is incomplete (credentials, the CRM's custom properties):
            # the message says what to set or create.
            raise WorkerStartError(f"a vendor is not configured: {exc}") from exc
        worker = build_worker(settings, client, [*activities, *LOCAL_ACTIVITIES], executor)
        running = asyncio.create_task(worker.run())
        stopping = asyncio.create_task(stop.wait())
        try:
            await _log_when_polling(worker, running, settings)
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                log.info("worker stopping", graceful_s=settings.worker_graceful_shutdown_s)
            await worker.shutdown()
            # Re-raises a fatal worker error (the server went away for good, a bad namespace).
            await running
        finally:
            stopping.cancel()
    log.info("worker stopped")


async def _log_when_polling(
    worker: Worker, running: asyncio.Task[None], settings: Settings
) -> None:
    # ``is_running`` turns true once the server has validated the worker and the pollers start;
    # a failed validation ends ``running`` instead, and its error is raised by the caller. The SDK
    # offers no event for this moment, hence the short polling wait.
    while not worker.is_running:
        done, _ = await asyncio.wait({running}, timeout=0.05)
        if done:
            return
    log.info(
        "worker started",
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue=settings.temporal_task_queue,
        activity_threads=settings.worker_activity_threads,
        max_cached_workflows=settings.worker_max_cached_workflows,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
    )
