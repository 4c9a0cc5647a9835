"""DocuSign behind the e-signature port: send the order form from a server template, void it on
expiry or loss.

docusign-esign is a blocking SDK, so the activities are synchronous (worker thread pool). The
envelope's content is ``integrations.docusign.mapping``. A retried ``send_contract`` must not send
the customer a second contract, so it first looks for an envelope already carrying the deal id
and reuses it unless it was voided.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import urllib3
from docusign_esign import (
    ApiClient,
    Envelope,
    EnvelopesApi,
)
from docusign_esign.client.api_exception import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from integrations.docusign.mapping import envelope_definition
from qtc import errors, ports
from qtc.deal import deal_id_for
from runtime.settings import Settings
from runtime.vendor_errors import from_http_status, non_retryable, unreachable

VENDOR = "DocuSign"
VENDOR_ID = "docusign"
# Envelopes in these states cannot be voided any more; voiding them again is not an error.
FINAL_STATES = frozenset({"voided", "completed", "declined"})
# An envelope in these states must not be reused: a new contract has to go out.
NOT_REUSABLE = frozenset({"voided", "deleted"})
# How DocuSign says an envelope is not one this product's sending user sent in this account: it
# does not exist, belongs to another account, or was sent by another user of the account (which
# an account-wide Connect configuration also reports).
NO_SUCH_ENVELOPE = frozenset(
    {
        "ENVELOPE_DOES_NOT_EXIST",
        "INVALID_ENVELOPE_ID",
        "ACCOUNT_NOT_AUTHORIZED_FOR_ENVELOPE",
        "USER_NOT_ENVELOPE_SENDER_OR_RECIPIENT",
    }
)
VOID_REASON_MAX = 200
T = TypeVar("T")


def _error_body(exc: ApiException) -> tuple[str | None, str]:
    raw = exc.body
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    if isinstance(body, dict):
        code = body.get("errorCode")
        message = body.get("message") or text or str(exc.reason)
        return (str(code) if code else None), str(message)
    return None, text or str(exc.reason)


def _custom_field(envelope: Any, name: str) -> str | None:
    fields = getattr(envelope, "custom_fields", None)
    for field in getattr(fields, "text_custom_fields", None) or []:
        if field.name == name:
            return str(field.value) if field.value is not None else None
    return None


class DocusignESignature:
    """The e-signature port on DocuSign; the worker builds one authenticated ``ApiClient`` and
    shares it. ``read_contract`` is also what the Connect listener calls for a message that names
    only the envelope."""

    name = VENDOR_ID

    def __init__(
        self,
        api_client: ApiClient,
        account_id: str,
        template_id: str,
        *,
        lookback: timedelta = timedelta(days=730),
        timeout_s: float = 30.0,
    ) -> None:
        self._envelopes = EnvelopesApi(api_client)
        self._account_id = account_id
        self._template_id = template_id
        self._lookback = lookback
        self._timeout = (min(timeout_s, 10.0), timeout_s)

    @classmethod
    def from_settings(cls, api_client: ApiClient, settings: Settings) -> DocusignESignature:
        return cls(
            api_client,
            settings.docusign_account_id,
            settings.docusign_template_id,
            lookback=timedelta(days=settings.docusign_envelope_lookback_days),
            timeout_s=settings.docusign_timeout_s,
        )

    @activity.defn(name=ports.ACT_SEND_CONTRACT)
    def send_contract(self, input: ports.SendContractInput) -> ports.ContractSent:
        """Send the order form for signature, or return the envelope already sent for the deal."""
        existing = self.find_envelope(input.deal_id)
        if existing is not None:
            status = str(existing.status or "")
            if status == "declined":
                raise non_retryable(
                    errors.CONTRACT_NOT_SENDABLE,
                    f"envelope {existing.envelope_id} for {input.deal_id} was declined by the "
                    "signer; void it in DocuSign and resume the deal, or mark the deal lost",
                    details={"vendor": VENDOR, "envelope_id": existing.envelope_id},
                )
            activity.logger.info(
                "reusing envelope %s (%s) for %s", existing.envelope_id, status, input.deal_id
            )
            return ports.ContractSent(
                envelope_id=str(existing.envelope_id), status=status, system=VENDOR_ID
            )
        definition = envelope_definition(input.deal_id, input.priced, self._template_id)
        summary = self._call(
            "create envelope",
            lambda: self._envelopes.create_envelope(
                self._account_id,
                envelope_definition=definition,
                _request_timeout=self._timeout,
            ),
        )
        activity.logger.info("sent envelope %s for %s", summary.envelope_id, input.deal_id)
        return ports.ContractSent(
            envelope_id=str(summary.envelope_id),
            status=str(summary.status or "sent"),
            system=VENDOR_ID,
        )

    @activity.defn(name=ports.ACT_VOID_CONTRACT)
    def void_contract(self, input: ports.VoidContractInput) -> ports.ContractVoided:
        """Void the envelope; one already voided, completed or declined is left as it is, and
        reported: a ``completed`` one was signed, and the deal may still honour that signature."""
        final = self._already_final(input)
        if final is not None:
            return final
        voiding = Envelope(status="voided", voided_reason=input.reason[:VOID_REASON_MAX])
        try:
            self._call(
                "void envelope",
                lambda: self._envelopes.update(
                    self._account_id,
                    input.envelope_id,
                    envelope=voiding,
                    _request_timeout=self._timeout,
                ),
            )
        except ApplicationError as exc:
            # Another actor (the signer, a webhook-triggered void) may have finished the envelope
            # between our read and our void; DocuSign then refuses with 400.
            final = self._already_final(input) if exc.non_retryable else None
            if final is not None:
                return final
            raise
        activity.logger.info("voided envelope %s for %s", input.envelope_id, input.deal_id)
        return ports.ContractVoided(envelope_id=input.envelope_id, status="voided")

    def read_contract(self, contract_id: str) -> ports.ContractRecord | None:
        """The envelope's deal (from the custom fields ``send_contract`` wrote), status, completion
        time and signer; None when the account has no such envelope.

        One GET per call: DocuSign's polling rule (no more than one status read per envelope per
        15 minutes) concerns polling; this runs once per Connect message that lacks the facts.
        """
        try:
            envelope = self._envelopes.get_envelope(
                self._account_id,
                contract_id,
                include="custom_fields,recipients",
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            code, _ = _error_body(exc)
            if int(exc.status or 0) in (400, 404) and code in NO_SUCH_ENVELOPE:
                return None
            raise self._classify("read envelope", exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise unreachable(VENDOR, exc) from exc
        opportunity_id = _custom_field(envelope, "opportunity_id")
        deal_id = _custom_field(envelope, "deal_id") or (
            deal_id_for(opportunity_id) if opportunity_id else None
        )
        signers = (envelope.recipients.signers or []) if envelope.recipients else []
        signer = signers[0] if signers else None
        return ports.ContractRecord(
            contract_id=str(envelope.envelope_id or contract_id),
            deal_id=deal_id,
            status=str(envelope.status or "").lower(),
            completed_at=envelope.completed_date_time or None,
            signer_name=signer.name if signer else None,
            signer_email=signer.email if signer else None,
        )

    def find_envelope(self, deal_id: str) -> Any | None:
        """The newest envelope carrying ``deal_id`` that may be reused, if any."""
        since = datetime.now(UTC) - self._lookback
        found = self._call(
            "list envelopes",
            lambda: self._envelopes.list_status_changes(
                self._account_id,
                custom_field=f"deal_id={deal_id}",
                from_date=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                include="custom_fields",
                _request_timeout=self._timeout,
            ),
        )
        candidates = [
            e
            for e in (found.envelopes or [])
            if str(e.status or "").lower() not in NOT_REUSABLE
            # The filter is a server-side match; a field we can see must agree exactly.
            and _custom_field(e, "deal_id") in (None, deal_id)
        ]
        candidates.sort(key=lambda e: str(e.created_date_time or ""), reverse=True)
        return candidates[0] if candidates else None

    def _already_final(self, input: ports.VoidContractInput) -> ports.ContractVoided | None:
        envelope = self._call(
            "read envelope",
            lambda: self._envelopes.get_envelope(
                self._account_id,
                input.envelope_id,
                include="recipients",
                _request_timeout=self._timeout,
            ),
        )
        status = str(envelope.status or "").lower()
        if status not in FINAL_STATES:
            return None
        activity.logger.info(
            "envelope %s for %s is already %s; nothing to void",
            input.envelope_id,
            input.deal_id,
            status,
        )
        signers = (envelope.recipients.signers or []) if envelope.recipients else []
        signer = signers[0] if signers else None
        return ports.ContractVoided(
            envelope_id=input.envelope_id,
            status=status,
            completed_at=envelope.completed_date_time if status == "completed" else None,
            signer_name=signer.name if signer else None,
            signer_email=signer.email if signer else None,
        )

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ApiException as exc:
            raise self._classify(what, exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise unreachable(VENDOR, exc) from exc

    @staticmethod
    def _classify(what: str, exc: ApiException) -> ApplicationError:
        status = int(exc.status or 0)
        if status == 0:
            # The SDK reports TLS failures and unsendable requests as status 0.
            return unreachable(VENDOR, exc)
        code, message = _error_body(exc)
        return from_http_status(VENDOR, status, f"{what}: {message}", exc.headers, code=code)
