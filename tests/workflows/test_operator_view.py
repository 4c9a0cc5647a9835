"""What an operator sees of a stuck deal, and what brings it to an end.

A retrying step is marked on the deal (QtcBlockedStep / QtcErrorType, ``last_error.retrying``)
and shows as a pending regular activity with its attempts and last failure; a parked deal says
which step, why and what to do; a deal whose own data is wrong can be corrected and resumed, or
cancelled with a note of what exists.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.deal import (
    SIGNAL_RESUME,
    SIGNAL_SIGNATURE_COMPLETED,
    UPDATE_CANCEL,
    UPDATE_CORRECT_ACCOUNT,
    AccountCorrection,
    Cancel,
    DealStatus,
    DecisionResult,
    Resume,
)
from qtc.errors import VENDOR_INVALID_REQUEST, VENDOR_UNAVAILABLE
from qtc.models import PricedQuote, TaxId
from qtc.operator import current_details
from qtc.ports import ACT_CREATE_BILLING_CUSTOMER, ACT_PROVISION_PRODUCT
from runtime.search_attributes import BLOCKED_STEP_KEY, CURRENCY_KEY, ERROR_TYPE_KEY, STAGE_KEY
from tests.workflows.support import (
    FakeVendors,
    signature,
    start_deal,
    status_of,
    wait_for_stage,
)
from workflows.deal import DealWorkflow

BAD_TAX_ID = ApplicationError(
    "Stripe answered 400: Invalid value for eu_vat.",
    {"vendor": "Stripe", "status": 400, "code": "tax_id_invalid", "field": "/account/tax_id/value"},
    type=VENDOR_INVALID_REQUEST,
    non_retryable=True,
)


async def signed(
    handle: WorkflowHandle[DealWorkflow, DealStatus], at: datetime
) -> WorkflowHandle[DealWorkflow, DealStatus]:
    status = await wait_for_stage(handle, "awaiting_signature")
    assert status.envelope_id is not None
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature(status.envelope_id, at))
    return handle


async def until(handle: WorkflowHandle[DealWorkflow, DealStatus], ready: object) -> DealStatus:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        status = await status_of(handle)
        if callable(ready) and ready(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never reached the expected state: {status}")
        await asyncio.sleep(0.05)


async def test_a_step_that_keeps_failing_is_marked_and_visible_as_a_pending_attempt(
    env: WorkflowEnvironment,
    worker: Worker,
    fakes: FakeVendors,
    quote: object,
    now: datetime,
) -> None:
    assert callable(quote)
    fakes.failures[ACT_PROVISION_PRODUCT] = [
        ApplicationError("product backend answered 500", type=VENDOR_UNAVAILABLE) for _ in range(4)
    ]
    handle = await signed(await start_deal(env.client, worker.task_queue, quote()), now)

    retrying = await until(handle, lambda s: s.last_error is not None and s.last_error.retrying)
    described = await handle.describe()
    attributes = described.typed_search_attributes
    pending = described.raw_description.pending_activities

    assert retrying.stage == "invoice_sent"
    assert retrying.last_error is not None
    assert retrying.last_error.step == ACT_PROVISION_PRODUCT
    assert retrying.last_error.system == "product_backend"
    assert attributes.get(BLOCKED_STEP_KEY) == ACT_PROVISION_PRODUCT
    assert attributes.get(ERROR_TYPE_KEY) == VENDOR_UNAVAILABLE
    assert attributes.get(CURRENCY_KEY) == "USD"
    assert [p.activity_type.name for p in pending] == [ACT_PROVISION_PRODUCT]
    assert "Retrying step" in current_details(retrying)

    await env.sleep(timedelta(minutes=5))
    done = await handle.result()
    cleared = (await handle.describe()).typed_search_attributes

    assert done.stage == "completed"
    assert fakes.names().count(ACT_PROVISION_PRODUCT) == 5
    assert cleared.get(BLOCKED_STEP_KEY) is None
    assert cleared.get(ERROR_TYPE_KEY) is None


async def test_a_deal_refused_for_its_own_tax_id_is_corrected_and_resumed_to_completion(
    env: WorkflowEnvironment,
    worker: Worker,
    fakes: FakeVendors,
    quote: object,
    now: datetime,
) -> None:
    assert callable(quote)
    fakes.failures[ACT_CREATE_BILLING_CUSTOMER] = [BAD_TAX_ID]
    priced: PricedQuote = quote()
    handle = await signed(await start_deal(env.client, worker.task_queue, priced), now)

    parked = await wait_for_stage(handle, "needs_attention")
    attributes = (await handle.describe()).typed_search_attributes

    assert parked.last_error is not None
    assert parked.last_error.field == "/account/tax_id/value"
    assert parked.last_error.code == "tax_id_invalid"
    assert parked.last_error.resume_helps is False
    assert parked.last_error.action is not None and "qtc deal correct" in parked.last_error.action
    assert attributes.get(STAGE_KEY) == "needs_attention"
    assert attributes.get(BLOCKED_STEP_KEY) == ACT_CREATE_BILLING_CUSTOMER
    details = current_details(parked)
    assert "create_billing_customer" in details and "tax_id_invalid" in details

    fixed = priced.account.model_copy(update={"tax_id": TaxId(type="us_ein", value="98-7654321")})
    answer = await handle.execute_update(
        UPDATE_CORRECT_ACCOUNT,
        AccountCorrection(by="oscar", reason="EIN from the signed W-9", account=fixed),
        result_type=DecisionResult,
    )
    await handle.signal(SIGNAL_RESUME, Resume(by="oscar"))
    done = await handle.result()

    assert answer.stage == "needs_attention"
    assert done.stage == "completed"
    assert [c.fields for c in done.corrections] == [["/account/tax_id"]]
    retried = fakes.inputs(ACT_CREATE_BILLING_CUSTOMER)[-1]
    assert retried.priced.account.tax_id.value == "98-7654321"


async def test_a_parked_deal_is_cancelled_with_a_note_of_what_exists(
    env: WorkflowEnvironment,
    worker: Worker,
    fakes: FakeVendors,
    quote: object,
    now: datetime,
) -> None:
    assert callable(quote)
    fakes.failures[ACT_CREATE_BILLING_CUSTOMER] = [BAD_TAX_ID]
    handle = await signed(await start_deal(env.client, worker.task_queue, quote()), now)
    await wait_for_stage(handle, "needs_attention")

    answer = await handle.execute_update(
        UPDATE_CANCEL, Cancel(by="oscar", reason="customer withdrew"), result_type=DecisionResult
    )
    done = await handle.result()

    assert answer.stage == "cancelled"
    assert done.stage == "cancelled"
    assert answer.message is not None and "signed contract" in answer.message
    assert "billing customer" not in answer.message


async def test_corrections_and_cancels_outside_needs_attention_are_refused_and_change_nothing(
    env: WorkflowEnvironment, worker: Worker, quote: object
) -> None:
    assert callable(quote)
    priced: PricedQuote = quote()
    handle = await start_deal(env.client, worker.task_queue, priced)
    await wait_for_stage(handle, "awaiting_signature")

    with pytest.raises(WorkflowUpdateFailedError) as correcting:
        await handle.execute_update(
            UPDATE_CORRECT_ACCOUNT,
            AccountCorrection(by="oscar", reason="typo", account=priced.account),
            result_type=DecisionResult,
        )
    with pytest.raises(WorkflowUpdateFailedError) as cancelling:
        await handle.execute_update(
            UPDATE_CANCEL, Cancel(by="oscar", reason="why not"), result_type=DecisionResult
        )

    assert "needs_attention" in str(correcting.value.cause)
    assert "mark it lost" in str(cancelling.value.cause)

    assert (await status_of(handle)).stage == "awaiting_signature"
    # A validator's refusal writes nothing: no update is accepted into the history.
    recorded = {EventType.Name(event.event_type) for event in (await handle.fetch_history()).events}
    assert not any("UPDATE" in name for name in recorded)
