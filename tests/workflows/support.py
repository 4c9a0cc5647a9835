"""What the workflow tests and the replay recorder share: a priced quote factory, fake vendor
activities that record their calls, and the time-skipping test server with our search attributes.

The fakes are registered under the real activity names (as samples-python does), so the workflow
under test is exactly the one the worker runs; only the outside systems are replaced.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.deal import (
    QUERY_STATUS,
    AmendmentTerms,
    DealInput,
    DealStatus,
    Phase,
    SignatureCompleted,
    Stage,
)
from qtc.models import Account, Address, PricedLine, PricedQuote, Signer, TaxId
from qtc.ports import (
    ACT_AMEND_SUBSCRIPTION,
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_MARK_CLOSED_WON,
    ACT_PREVIEW_INVOICE_TAX,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_AMENDMENT_INVOICE,
    ACT_SEND_CONTRACT,
    ACT_SEND_FIRST_INVOICE,
    ACT_SYNC_ERP_INVOICE,
    ACT_VOID_CONTRACT,
    ACT_WRITE_BACK_BILLING_IDS,
    AmendSubscriptionInput,
    BillingCustomer,
    ContractSent,
    ContractVoided,
    CreateCustomerInput,
    CreateSubscriptionInput,
    ErpInvoiceSynced,
    InvoiceSent,
    MarkClosedWonInput,
    PreviewTaxInput,
    Provisioned,
    ProvisionInput,
    SendAmendmentInvoiceInput,
    SendContractInput,
    SendInvoiceInput,
    SubscriptionAmended,
    SubscriptionCreated,
    SyncErpInvoiceInput,
    TaxPreview,
    VoidContractInput,
    WriteBackInput,
)
from qtc.pricing import reprice_for_signature
from runtime.search_attributes import SEARCH_ATTRIBUTES
from workflows.deal import LOCAL_ACTIVITIES, DealWorkflow, workflow_id_for

TEST_SERVER = Path(sys.prefix) / "bin" / "temporal-test-server"


async def start_test_environment() -> WorkflowEnvironment:
    """The Java time-skipping server on a free port, knowing the deal's search attributes.

    It does not know custom search attributes by default, and an upsert of an unknown one fails
    the workflow task forever (the test would hang instead of failing), so they are added first.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
                for key in SEARCH_ATTRIBUTES
            },
        )
    )
    return env


def new_opportunity_id() -> str:
    """A fresh Salesforce-shaped opportunity id, so every test runs its own deal."""
    return "006" + uuid.uuid4().hex[:15].upper()


def priced_quote(
    *,
    opportunity_id: str,
    priced_at: datetime,
    valid_until: date,
    status: Literal["ok", "needs_approval"] = "ok",
    requested_start: Literal["on_signature"] | date = "on_signature",
) -> PricedQuote:
    """A 12-month annual quote for 50 Platform Pro seats at 10% off plus implementation services,
    priced (dated) at ``priced_at``: the workflow must re-date it to the signature."""
    draft = PricedQuote(
        status=status,
        quote_id=f"Q-{opportunity_id[-6:]}",
        opportunity_id=opportunity_id,
        currency="usd",
        signed_at=priced_at,
        start_date=priced_at.date(),
        term_start=priced_at.date(),
        term_end=priced_at.date(),
        term_months=12,
        billing_frequency="annual",
        billing_anchor="start",
        payment_terms_days=30,
        uplift_percent=Decimal("7"),
        valid_until=valid_until,
        account=Account(
            legal_name="Acme Robotics, Inc.",
            billing_email="ap@acme.example",
            address=Address(
                line1="1 Main St", city="Austin", state="TX", postal_code="78701", country="US"
            ),
            tax_id=TaxId(type="us_ein", value="12-3456789"),
        ),
        signer=Signer(name="Jane Doe", email="jane@acme.example"),
        lines=[
            PricedLine(
                sku="PLATFORM-PRO",
                name="Platform Pro",
                kind="recurring",
                quantity=50,
                discount_percent=Decimal("10") if status == "ok" else Decimal("25"),
                list_price=Decimal("120.00"),
                features={"sso": True, "seats": 50},
            ),
            PricedLine(
                sku="IMPL-SERVICES",
                name="Implementation services",
                kind="one_time",
                quantity=1,
                discount_percent=Decimal("0"),
                list_price=Decimal("5000.00"),
                auto_added=True,
                reason="required by PLATFORM-PRO",
            ),
        ],
        invoices=[],
        mrr_minor=0,
        arr_minor=0,
        tcv_minor=0,
        first_invoice_total_minor=0,
        requested_start=requested_start,
    )
    # The schedule arithmetic is qtc.pricing's; here it only fills in a consistent quote.
    return reprice_for_signature(draft, priced_at)


@dataclass
class Call:
    activity: str
    input: Any
    scheduled_at: datetime


@dataclass
class FakeVendors:
    """Stand-ins for CRM, e-signature, billing and provisioning that record every call.

    ``failures[name]`` is a queue of exceptions the named activity raises, one per attempt, before
    it starts succeeding. ``hold_send_contract`` keeps send_contract from returning until set.
    """

    failures: dict[str, list[BaseException]] = field(default_factory=dict)
    hold_send_contract: asyncio.Event | None = None
    # When set, void_contract finds the envelope already signed at this time (as DocuSign would).
    signed_before_void: datetime | None = None
    calls: list[Call] = field(default_factory=list)

    def names(self) -> list[str]:
        return [call.activity for call in self.calls]

    def inputs(self, name: str) -> list[Any]:
        return [call.input for call in self.calls if call.activity == name]

    def _attempt(self, name: str, input: Any) -> None:
        self.calls.append(Call(name, input, activity.info().current_attempt_scheduled_time))
        queued = self.failures.get(name)
        if queued:
            raise queued.pop(0)

    @staticmethod
    def envelope_id_for(deal_id: str) -> str:
        return f"env-{deal_id}"

    @activity.defn(name=ACT_SEND_CONTRACT)
    async def send_contract(self, input: SendContractInput) -> ContractSent:
        self._attempt(ACT_SEND_CONTRACT, input)
        if self.hold_send_contract is not None:
            await self.hold_send_contract.wait()
        return ContractSent(envelope_id=self.envelope_id_for(input.deal_id), status="sent")

    @activity.defn(name=ACT_VOID_CONTRACT)
    async def void_contract(self, input: VoidContractInput) -> ContractVoided:
        self._attempt(ACT_VOID_CONTRACT, input)
        if self.signed_before_void is not None:
            return ContractVoided(
                envelope_id=input.envelope_id,
                status="completed",
                completed_at=self.signed_before_void,
                signer_name="Jane Doe",
            )
        return ContractVoided(envelope_id=input.envelope_id, status="voided")

    @activity.defn(name=ACT_MARK_CLOSED_WON)
    async def mark_closed_won(self, input: MarkClosedWonInput) -> None:
        self._attempt(ACT_MARK_CLOSED_WON, input)

    @activity.defn(name=ACT_CREATE_BILLING_CUSTOMER)
    async def create_billing_customer(self, input: CreateCustomerInput) -> BillingCustomer:
        self._attempt(ACT_CREATE_BILLING_CUSTOMER, input)
        return BillingCustomer(customer_id=f"cus_{input.deal_id}")

    @activity.defn(name=ACT_CREATE_SUBSCRIPTION)
    async def create_subscription(self, input: CreateSubscriptionInput) -> SubscriptionCreated:
        self._attempt(ACT_CREATE_SUBSCRIPTION, input)
        return SubscriptionCreated(
            subscription_id=f"sub_{input.deal_id}", schedule_id=f"sub_sched_{input.deal_id}"
        )

    @activity.defn(name=ACT_SEND_FIRST_INVOICE)
    async def send_first_invoice(self, input: SendInvoiceInput) -> InvoiceSent:
        self._attempt(ACT_SEND_FIRST_INVOICE, input)
        return InvoiceSent(
            invoice_id=f"in_{input.deal_id}",
            number="ACME-0001",
            invoice_url=f"https://invoice.example/in_{input.deal_id}",
            total_minor=input.priced.first_invoice_total_minor,
            status="open",
        )

    @activity.defn(name=ACT_AMEND_SUBSCRIPTION)
    async def amend_subscription(self, input: AmendSubscriptionInput) -> SubscriptionAmended:
        self._attempt(ACT_AMEND_SUBSCRIPTION, input)
        return SubscriptionAmended(
            subscription_id=input.subscription_id,
            schedule_id=input.schedule_id,
            changed_from=input.amendment.current_period.end,
        )

    @activity.defn(name=ACT_SEND_AMENDMENT_INVOICE)
    async def send_amendment_invoice(self, input: SendAmendmentInvoiceInput) -> InvoiceSent:
        self._attempt(ACT_SEND_AMENDMENT_INVOICE, input)
        return InvoiceSent(
            invoice_id=f"in_{input.deal_id}",
            number="ACME-0002",
            total_minor=input.priced.first_invoice_total_minor,
            status="open",
        )

    @activity.defn(name=ACT_PREVIEW_INVOICE_TAX)
    async def preview_invoice_tax(self, input: PreviewTaxInput) -> TaxPreview:
        self._attempt(ACT_PREVIEW_INVOICE_TAX, input)
        net = input.priced.invoices[0].total_minor
        return TaxPreview(
            tax_minor=net // 5, total_excluding_tax_minor=net, total_minor=net + net // 5
        )

    @activity.defn(name=ACT_PROVISION_PRODUCT)
    async def provision_product(self, input: ProvisionInput) -> Provisioned:
        self._attempt(ACT_PROVISION_PRODUCT, input)
        features = {line.sku: dict(line.features) for line in input.priced.lines if line.features}
        return Provisioned(tenant_id=input.tenant_id, features=features)

    @activity.defn(name=ACT_SYNC_ERP_INVOICE)
    async def sync_erp_invoice(self, input: SyncErpInvoiceInput) -> ErpInvoiceSynced:
        self._attempt(ACT_SYNC_ERP_INVOICE, input)
        return ErpInvoiceSynced(
            customer_id=f"erp-cus-{input.deal_id}",
            invoice_id=f"erp-in-{input.deal_id}",
            invoice_number="INV00001",
            total_minor=input.billed_total_minor,
            system="netsuite",
        )

    @activity.defn(name=ACT_WRITE_BACK_BILLING_IDS)
    async def write_back_billing_ids(self, input: WriteBackInput) -> None:
        self._attempt(ACT_WRITE_BACK_BILLING_IDS, input)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.send_contract,
            self.void_contract,
            self.mark_closed_won,
            self.create_billing_customer,
            self.create_subscription,
            self.send_first_invoice,
            self.amend_subscription,
            self.send_amendment_invoice,
            self.preview_invoice_tax,
            self.provision_product,
            self.sync_erp_invoice,
            self.write_back_billing_ids,
            *LOCAL_ACTIVITIES,
        ]


def deal_worker(client: Client, task_queue: str, fakes: FakeVendors) -> Worker:
    return Worker(
        client, task_queue=task_queue, workflows=[DealWorkflow], activities=fakes.activities()
    )


async def start_deal(
    client: Client,
    task_queue: str,
    priced: PricedQuote,
    *,
    phase: Phase = 3,
    review_reminder_hours: int | None = None,
    erp: str | None = None,
    start_signal: str | None = None,
    start_signal_arg: Any = None,
    amends: AmendmentTerms | None = None,
    tax: bool = False,
) -> WorkflowHandle[DealWorkflow, DealStatus]:
    deal_input = DealInput(
        priced=priced,
        phase=phase,
        started_by="sam.sales@sandbox.example",
        review_reminder_hours=review_reminder_hours,
        erp=erp,
        amends=amends,
        tax=tax,
    )
    workflow_id = workflow_id_for(priced.opportunity_id)
    if start_signal is None:
        return await client.start_workflow(
            DealWorkflow.run, deal_input, id=workflow_id, task_queue=task_queue
        )
    return await client.start_workflow(
        DealWorkflow.run,
        deal_input,
        id=workflow_id,
        task_queue=task_queue,
        start_signal=start_signal,
        start_signal_args=[start_signal_arg],
    )


async def status_of(handle: WorkflowHandle[Any, Any]) -> DealStatus:
    return await handle.query(QUERY_STATUS, result_type=DealStatus)


async def wait_for_stage(
    handle: WorkflowHandle[Any, Any], stage: Stage, *, seconds: float = 10.0
) -> DealStatus:
    """Poll the status query until the deal reaches ``stage`` (a query never skips time)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status = await status_of(handle)
        if status.stage == stage:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"deal stayed in {status.stage}, expected {stage}: {status}")
        await asyncio.sleep(0.05)


async def wait_for_call(fakes: FakeVendors, name: str, *, seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while name not in fakes.names():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} was never called; calls: {fakes.names()}")
        await asyncio.sleep(0.02)


def signature(envelope_id: str, completed_at: datetime) -> SignatureCompleted:
    """The signature_completed signal as the DocuSign webhook sends it."""
    return SignatureCompleted(
        envelope_id=envelope_id,
        completed_at=completed_at.astimezone(UTC),
        signer_name="Jane Doe",
        signer_email="jane@acme.example",
    )
