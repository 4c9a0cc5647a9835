"""Ironclad behind the e-signature port: the contract is a workflow launched from a published
template, cancelled on expiry or loss.

The activities are async (httpx) and share the worker's one ``IroncladApi``. The workflow's
attributes are ``integrations.ironclad.mapping``. A retried ``send_contract`` must not put a second
contract in front of the customer, so it first looks for a workflow launched for the deal (by its
``qtcDealId`` attribute) and reuses it unless it was cancelled; the workflow id is what the port
calls the envelope id.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from integrations.ironclad.client import IroncladApi, IroncladHttpError
from integrations.ironclad.mapping import (
    deal_id_of,
    launch_attributes,
    signature_of,
    workflow_filter,
)
from qtc import ports
from runtime.vendor_errors import from_http_status, unreachable

VENDOR = "Ironclad"
VENDOR_ID = "ironclad"
SIGNER_ROLE = "Counterparty Signer"
# Workflows in these states still stand for the deal's contract and are reused.
REUSABLE = ["active", "paused", "completed"]
CANCEL_COMMENT_MAX = 1000
T = TypeVar("T")


def classify(what: str, exc: Exception) -> ApplicationError:
    """An Ironclad failure as a retryable or non-retryable activity failure naming the field."""
    if isinstance(exc, IroncladHttpError):
        message = f"{what}: {exc.message}"
        if exc.param:
            message += f" (attribute {exc.param})"
        error = from_http_status(VENDOR, exc.status, message, exc.headers, code=exc.code)
        if exc.param and error.details and isinstance(error.details[0], dict):
            error.details[0]["param"] = exc.param
        return error
    return unreachable(VENDOR, exc)


async def call(what: str, pending: Awaitable[T]) -> T:
    try:
        return await pending
    except (IroncladHttpError, httpx.HTTPError) as exc:
        raise classify(what, exc) from exc


class IroncladESignature:
    """The e-signature port on Ironclad workflows."""

    def __init__(
        self,
        api: IroncladApi,
        template_id: str,
        *,
        creator_email: str | None,
        signer_role: str = SIGNER_ROLE,
    ) -> None:
        self._api = api
        self._template_id = template_id
        self._creator_email = creator_email
        self._signer_role = signer_role

    @activity.defn(name=ports.ACT_SEND_CONTRACT)
    async def send_contract(self, input: ports.SendContractInput) -> ports.ContractSent:
        """Launch the order-form workflow, or return the one already launched for the deal."""
        existing = await self.find_workflow(input.deal_id)
        if existing is not None:
            activity.logger.info(
                "reusing Ironclad workflow %s (%s) for %s",
                existing["id"],
                existing.get("status"),
                input.deal_id,
            )
            return ports.ContractSent(
                envelope_id=str(existing["id"]),
                status=str(existing.get("status") or "active"),
                system=VENDOR_ID,
            )
        attributes = launch_attributes(input.deal_id, input.priced)
        workflow = await call(
            "launch workflow",
            self._api.launch_workflow(
                self._template_id, attributes, creator_email=self._creator_email
            ),
        )
        activity.logger.info("launched Ironclad workflow %s for %s", workflow["id"], input.deal_id)
        return ports.ContractSent(
            envelope_id=str(workflow["id"]),
            status=str(workflow.get("status") or "active"),
            system=VENDOR_ID,
        )

    @activity.defn(name=ports.ACT_VOID_CONTRACT)
    async def void_contract(self, input: ports.VoidContractInput) -> ports.ContractVoided:
        """Cancel the workflow; one already cancelled or completed is left as it is, and reported:
        a completed one was signed, and the deal may still honour that signature."""
        final = await self._already_final(input)
        if final is not None:
            return final
        try:
            await call(
                "cancel workflow",
                self._api.cancel_workflow(input.envelope_id, input.reason[:CANCEL_COMMENT_MAX]),
            )
        except ApplicationError as exc:
            # The signer may have finished the workflow between our read and our cancel; Ironclad
            # then refuses the cancel as INVALID_STATE.
            final = await self._already_final(input) if exc.non_retryable else None
            if final is not None:
                return final
            raise
        activity.logger.info(
            "cancelled Ironclad workflow %s for %s", input.envelope_id, input.deal_id
        )
        return ports.ContractVoided(envelope_id=input.envelope_id, status="voided")

    async def find_workflow(self, deal_id: str) -> dict[str, Any] | None:
        """The newest workflow launched for ``deal_id`` that may be reused, if any."""
        found = await call(
            "list workflows",
            self._api.list_workflows(
                template_id=self._template_id, statuses=REUSABLE, formula=workflow_filter(deal_id)
            ),
        )
        # The filter is Ironclad's; the attribute we can see must agree exactly.
        mine = [w for w in found if deal_id_of(w) == deal_id and w.get("status") in REUSABLE]
        mine.sort(key=lambda w: str(w.get("created") or ""), reverse=True)
        return mine[0] if mine else None

    async def _already_final(self, input: ports.VoidContractInput) -> ports.ContractVoided | None:
        workflow = await call("read workflow", self._api.get_workflow(input.envelope_id))
        status = str(workflow.get("status") or "")
        if status == "cancelled":
            return ports.ContractVoided(envelope_id=input.envelope_id, status="voided")
        if status != "completed":
            return None
        signers = await call("read signatures", self._api.get_signatures(input.envelope_id))
        signature = signature_of(workflow, signers, self._signer_role)
        activity.logger.info(
            "Ironclad workflow %s for %s is already completed; nothing to cancel",
            input.envelope_id,
            input.deal_id,
        )
        return ports.ContractVoided(
            envelope_id=input.envelope_id,
            status="completed",
            completed_at=signature.completed_at if signature else None,
            signer_name=signature.name if signature else None,
            signer_email=signature.email if signature else None,
        )
