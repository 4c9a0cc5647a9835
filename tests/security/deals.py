"""A full phase-3 deal on the time-skipping server with the real ``DealWorkflow`` and fake vendor
activities that log the way the real activities and their SDKs do, including the lines a careless
SDK or vendor error would write with a credential in them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.deal import SIGNAL_SIGNATURE_COMPLETED, DealStatus
from qtc.models import PricedQuote
from qtc.ports import (
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_MARK_CLOSED_WON,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_CONTRACT,
    ACT_SEND_FIRST_INVOICE,
    ACT_VOID_CONTRACT,
    ACT_WRITE_BACK_BILLING_IDS,
    BillingCustomer,
    ContractSent,
    CreateCustomerInput,
    CreateSubscriptionInput,
    InvoiceSent,
    MarkClosedWonInput,
    Provisioned,
    ProvisionInput,
    SendContractInput,
    SendInvoiceInput,
    SubscriptionCreated,
    VoidContractInput,
    WriteBackInput,
)
from runtime.settings import Settings
from tests.workflows.support import (
    FakeVendors,
    new_opportunity_id,
    priced_quote,
    signature,
    start_deal,
    wait_for_stage,
)
from workflows.deal import LOCAL_ACTIVITIES, DealWorkflow

# The stdlib loggers the vendor SDKs write to, and a structlog logger like the activities' own.
stripe_sdk = logging.getLogger("stripe")
docusign_sdk = logging.getLogger("docusign_esign.client")
salesforce_sdk = logging.getLogger("simple_salesforce.api")
httpx_log = logging.getLogger("httpx")


class LoggingVendors:
    """The recording fakes of ``tests.workflows.support``, logging like the real activities.

    Each activity writes its canonical line (deal id bound) and one line an SDK or a vendor error
    could write with one of the configured secrets in it.
    """

    def __init__(self, settings: Settings) -> None:
        self.fakes = FakeVendors()
        self.settings = settings
        self.log = structlog.get_logger("activities.test")

    def _secret(self, name: str) -> str:
        value: Any = getattr(self.settings, name)
        text: str = value.get_secret_value()
        return text

    @activity.defn(name=ACT_SEND_CONTRACT)
    async def send_contract(self, input: SendContractInput) -> ContractSent:
        sent: ContractSent = await self.fakes.send_contract(input)
        # docusign-esign's ApiClient logs request headers at debug level.
        docusign_sdk.debug(
            "POST /restapi/v2.1/accounts/%s/envelopes headers=%s",
            self.settings.docusign_account_id,
            {"Authorization": "Bearer eyJ0eXAiOiJKV1Qi.payload.sig", "Accept": "application/json"},
        )
        activity.logger.info("sent envelope %s for %s", sent.envelope_id, input.deal_id)
        return sent

    @activity.defn(name=ACT_VOID_CONTRACT)
    async def void_contract(self, input: VoidContractInput) -> None:
        await self.fakes.void_contract(input)

    @activity.defn(name=ACT_MARK_CLOSED_WON)
    async def mark_closed_won(self, input: MarkClosedWonInput) -> None:
        await self.fakes.mark_closed_won(input)
        session = self._secret("salesforce_session_id")
        salesforce_sdk.debug(
            f"PATCH {self.settings.salesforce_instance_url}/services/data/v59.0/sobjects/"
            f"Opportunity/{input.opportunity_id} Cookie: sid={session}"
        )
        activity.logger.info("opportunity %s marked Closed Won", input.opportunity_id)

    @activity.defn(name=ACT_CREATE_BILLING_CUSTOMER)
    async def create_billing_customer(self, input: CreateCustomerInput) -> BillingCustomer:
        customer: BillingCustomer = await self.fakes.create_billing_customer(input)
        api_key = self._secret("stripe_api_key")
        stripe_sdk.info(f"Request to Stripe api method=post path=/v1/customers api_key={api_key}")
        self.log.info(
            "stripe customer created", deal_id=input.deal_id, customer_id=customer.customer_id
        )
        return customer

    @activity.defn(name=ACT_CREATE_SUBSCRIPTION)
    async def create_subscription(self, input: CreateSubscriptionInput) -> SubscriptionCreated:
        created: SubscriptionCreated = await self.fakes.create_subscription(input)
        try:
            raise PermissionError(
                f"Invalid API Key provided: {self._secret('stripe_api_key')} (retrying)"
            )
        except PermissionError:
            self.log.warning("stripe call failed once", deal_id=input.deal_id, exc_info=True)
        self.log.info(
            "stripe subscription created",
            deal_id=input.deal_id,
            subscription_id=created.subscription_id,
        )
        return created

    @activity.defn(name=ACT_SEND_FIRST_INVOICE)
    async def send_first_invoice(self, input: SendInvoiceInput) -> InvoiceSent:
        sent: InvoiceSent = await self.fakes.send_first_invoice(input)
        # An operator's request echoed with its headers as ASGI sees them.
        self.log.debug(
            "reviewer request",
            deal_id=input.deal_id,
            headers=[
                (b"authorization", b"Bearer " + next(iter(self.settings.api_tokens)).encode())
            ],
            raw=f"token={list(self.settings.api_tokens)[-1]}",
        )
        self.log.info("stripe invoice sent", deal_id=input.deal_id, invoice_id=sent.invoice_id)
        return sent

    @activity.defn(name=ACT_PROVISION_PRODUCT)
    async def provision_product(self, input: ProvisionInput) -> Provisioned:
        provisioned: Provisioned = await self.fakes.provision_product(input)
        secret = self._secret("provisioning_secret")
        body = input.tenant_id.encode()
        mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        httpx_log.debug(
            "HTTP Request: POST %s headers=%s key=%s",
            self.settings.provisioning_url,
            {"X-Qtc-Signature": f"v1={mac}", "Idempotency-Key": input.deal_id},
            secret,
        )
        connect = self._secret("docusign_connect_secret")
        callout = self._secret("salesforce_callout_secret")
        self.log.debug("webhook keys loaded", hmac_keys=f"connect={connect} flow={callout}")
        if self.settings.codec_on:
            keys, _ = self.settings.codec_key_set()
            material = base64.b64encode(next(iter(keys.values()))).decode()
            self.log.debug("codec ready", note=f"codec key material {material}")
        activity.logger.info("provisioned tenant %s for %s", input.tenant_id, input.deal_id)
        return provisioned

    @activity.defn(name=ACT_WRITE_BACK_BILLING_IDS)
    async def write_back_billing_ids(self, input: WriteBackInput) -> None:
        await self.fakes.write_back_billing_ids(input)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.send_contract,
            self.void_contract,
            self.mark_closed_won,
            self.create_billing_customer,
            self.create_subscription,
            self.send_first_invoice,
            self.provision_product,
            self.write_back_billing_ids,
            # The ledger and the notifications carry no customer data this test looks for.
            self.fakes.record_ledger_events,
            self.fakes.send_notification,
            *LOCAL_ACTIVITIES,
        ]


def deal_worker(
    client: Client, task_queue: str, activities: list[Callable[..., Any]], **options: Any
) -> Worker:
    return Worker(
        client, task_queue=task_queue, workflows=[DealWorkflow], activities=activities, **options
    )


async def a_fresh_quote(env: WorkflowEnvironment) -> PricedQuote:
    now = await env.get_current_time()
    return priced_quote(
        opportunity_id=new_opportunity_id(),
        priced_at=now - timedelta(days=10),
        valid_until=(now + timedelta(days=30)).date(),
    )


async def start_until_signature(
    client: Client, task_queue: str, priced: PricedQuote
) -> WorkflowHandle[DealWorkflow, DealStatus]:
    handle = await start_deal(client, task_queue, priced, phase=3)
    await wait_for_stage(handle, "awaiting_signature")
    return handle


async def sign_and_finish(
    env: WorkflowEnvironment, handle: WorkflowHandle[DealWorkflow, DealStatus]
) -> DealStatus:
    status = await wait_for_stage(handle, "awaiting_signature")
    assert status.envelope_id is not None
    signed = signature(status.envelope_id, await env.get_current_time())
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signed)
    return await handle.result()
