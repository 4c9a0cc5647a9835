"""The worker's composition root and its start-up against a bare dev server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from integrations.salesforce.client import salesforce_ca_file
from qtc import ports
from runtime.settings import Settings
from tests.e2e.conftest import TEMPORAL_CLI
from tests.stack_support import free_port
from workers.compose import build_activities
from workers.main import ensure_search_attributes
from workflows.deal import (
    ACT_DATE_AMENDMENT_AT_SIGNATURE,
    ACT_DATE_QUOTE_AT_SIGNATURE,
    LOCAL_ACTIVITIES,
)


@pytest_asyncio.fixture
async def bare_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that knows none of the deal's search attributes, as a fresh cluster."""
    environment = await WorkflowEnvironment.start_local(
        port=free_port(),
        ui=False,
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_log_level="error",
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    yield environment
    await environment.shutdown()


async def test_the_worker_registers_the_missing_search_attributes_once(
    bare_server: WorkflowEnvironment,
) -> None:
    client = bare_server.client
    request = ListSearchAttributesRequest(namespace=client.namespace)

    await ensure_search_attributes(client)
    await ensure_search_attributes(client)  # a second worker finds them and adds nothing

    registered = (await client.operator_service.list_search_attributes(request)).custom_attributes
    assert {
        name: registered.get(name) for name in ("QtcStage", "QtcCustomer", "QtcArr", "QtcPhase")
    } == {
        "QtcStage": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "QtcCustomer": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
        "QtcArr": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
        "QtcPhase": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }


def test_the_worker_registers_every_activity_the_deal_workflow_calls() -> None:
    # The SDK keeps the registered name on its (private) definition; the worker uses the same.
    definitions = [
        activity._Definition.must_from_callable(fn)
        for fn in [*build_activities(Settings(), contextlib.ExitStack()), *LOCAL_ACTIVITIES]
    ]
    names = [str(definition.name) for definition in definitions]

    assert sorted(names) == sorted(
        [
            ports.ACT_READ_OPPORTUNITY,
            ports.ACT_MARK_CLOSED_WON,
            ports.ACT_WRITE_BACK_BILLING_IDS,
            ports.ACT_SEND_CONTRACT,
            ports.ACT_VOID_CONTRACT,
            ports.ACT_CREATE_BILLING_CUSTOMER,
            ports.ACT_CREATE_SUBSCRIPTION,
            ports.ACT_SEND_FIRST_INVOICE,
            ports.ACT_PROVISION_PRODUCT,
            ports.ACT_AMEND_SUBSCRIPTION,
            ports.ACT_SEND_AMENDMENT_INVOICE,
            ports.ACT_PREVIEW_INVOICE_TAX,
            ACT_DATE_QUOTE_AT_SIGNATURE,
            ACT_DATE_AMENDMENT_AT_SIGNATURE,
        ]
    )


def test_the_sandbox_worker_trusts_the_emulators_ca_from_the_state_directory(
    tmp_path: Path,
) -> None:
    ca_file = tmp_path / "emulators" / "tls" / "sandbox-ca.pem"
    ca_file.parent.mkdir(parents=True)
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")

    assert salesforce_ca_file(Settings(state_dir=tmp_path)) == ca_file
    assert salesforce_ca_file(Settings(state_dir=tmp_path / "elsewhere")) is None
    explicit = tmp_path / "corporate-ca.pem"
    assert salesforce_ca_file(Settings(state_dir=tmp_path, salesforce_ca_file=explicit)) == explicit
