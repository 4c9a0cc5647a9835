"""Ironclad webhooks: verification as Ironclad documents it, and the signature an event carries.

Each request carries ``X-Ironclad-Webhook-Event-Id`` (unique per event: redeliveries repeat it)
and ``X-Ironclad-Webhook-Verification``, a JSON object of ``nonce``, ``signAlgorithm`` (e.g.
``RSA-SHA256``), ``signature`` and ``encoding`` (e.g. ``base64``). The signed data is the event id,
then the JSON text of the body, then the nonce; the signature is checked with Ironclad's RSA public
key, served by ``GET /public/api/v1/webhooks/verification-key``. The key is fetched once and kept;
when a check fails it is fetched again once (Ironclad may have rotated it) and the check repeated,
with re-fetches spaced so that a flood of forgeries cannot turn into a flood of key requests.

The event body only names the workflow (``payload.workflowID``); who signed and when is read from
the workflow itself. Workflows this product did not launch (no ``qtcDealId`` attribute) are not
ours to act on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.ironclad.client import IroncladApi, IroncladHttpError, build_ironclad_api
from integrations.ironclad.mapping import deal_id_of, signature_of
from qtc.deal import SignatureCompleted
from runtime.settings import Settings

EVENT_ID_HEADER = "x-ironclad-webhook-event-id"
VERIFICATION_HEADER = "x-ironclad-webhook-verification"
# The events after which a workflow may carry a complete signature.
SIGNED_EVENTS = frozenset({"workflow_signature_packet_fully_signed", "workflow_completed"})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "rsa-sha256": hashes.SHA256,
    "sha256": hashes.SHA256,
    "rsa-sha384": hashes.SHA384,
    "sha384": hashes.SHA384,
    "rsa-sha512": hashes.SHA512,
    "sha512": hashes.SHA512,
}


class VerificationError(Exception):
    """The request is not a genuine Ironclad webhook; the message says why."""


class IroncladUnreachable(Exception):
    """Ironclad could not be asked for its key or the workflow; the event may be delivered again."""


class _Verification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    nonce: str = Field(min_length=1, max_length=512)
    sign_algorithm: str = Field(alias="signAlgorithm", min_length=1, max_length=32)
    signature: str = Field(min_length=1, max_length=4096)
    encoding: str = Field(min_length=1, max_length=16)


def _decode(signature: str, encoding: str) -> bytes:
    try:
        if encoding.lower() == "base64":
            return base64.b64decode(signature, validate=True)
        if encoding.lower() == "hex":
            return bytes.fromhex(signature)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"the signature is not valid {encoding}") from exc
    raise VerificationError(f"unsupported signature encoding {encoding!r}")


def _signed_texts(body: bytes) -> list[bytes]:
    """The body as sent and, if different, as ``JSON.stringify`` would write it back."""
    texts = [body]
    try:
        compact = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    except ValueError:
        return texts
    if compact != body:
        texts.append(compact)
    return texts


def verify_with_key(public_pem: str, event_id: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is a valid Ironclad signature of this event under ``public_pem``.

    Raises:
        VerificationError: The header is not a verification object Ironclad would send.
    """
    try:
        verification = _Verification.model_validate_json(header)
    except ValidationError as exc:
        raise VerificationError(
            "X-Ironclad-Webhook-Verification is not a JSON object of nonce, signAlgorithm, "
            "signature and encoding"
        ) from exc
    algorithm = _HASHES.get(verification.sign_algorithm.lower())
    if algorithm is None:
        raise VerificationError(f"unsupported signAlgorithm {verification.sign_algorithm!r}")
    signature = _decode(verification.signature, verification.encoding)
    try:
        key = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError("Ironclad's verification key is not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise VerificationError("Ironclad's verification key is not an RSA key")
    for text in _signed_texts(body):
        data = event_id.encode() + text + verification.nonce.encode()
        try:
            key.verify(signature, data, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            continue
        return True
    return False


class WebhookVerifier:
    """Checks webhook signatures with Ironclad's key, cached, re-fetched once on a failed check.

    Args:
        fetch_key: Returns the PEM public key (``IroncladApi.verification_key``); its failures
            (Ironclad unreachable) propagate, so the caller can ask Ironclad to deliver again.
        min_refetch_s: The least time between two re-fetches caused by failed checks.
    """

    def __init__(self, fetch_key: Callable[[], Awaitable[str]], *, min_refetch_s: float = 30.0):
        self._fetch_key = fetch_key
        self._min_refetch_s = min_refetch_s
        self._key: str | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _current_key(self) -> str:
        async with self._lock:
            if self._key is None:
                self._key = await self._fetch_key()
                self._fetched_at = time.monotonic()
            return self._key

    async def _refetched_key(self, failed: str) -> str | None:
        async with self._lock:
            if self._key != failed:
                return self._key  # another request already fetched a newer key
            if time.monotonic() - self._fetched_at < self._min_refetch_s:
                return None
            self._key = await self._fetch_key()
            self._fetched_at = time.monotonic()
            return self._key if self._key != failed else None

    async def verify(self, headers: dict[str, str], body: bytes) -> str:
        """Return the event id of a genuine webhook.

        Raises:
            VerificationError: A header is missing or malformed, or the signature does not match
                Ironclad's key (after one re-fetch of the key).
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        event_id = lowered.get(EVENT_ID_HEADER, "").strip()
        header = lowered.get(VERIFICATION_HEADER, "").strip()
        if not event_id:
            raise VerificationError("X-Ironclad-Webhook-Event-Id is missing")
        if not header:
            raise VerificationError("X-Ironclad-Webhook-Verification is missing")
        key = await self._current_key()
        if verify_with_key(key, event_id, body, header):
            return event_id
        newer = await self._refetched_key(key)
        if newer is not None and verify_with_key(newer, event_id, body, header):
            return event_id
        raise VerificationError("the signature does not match Ironclad's verification key")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event: str = Field(min_length=1, max_length=100)
    workflow_id: str | None = Field(None, alias="workflowID", max_length=100)
    template_id: str | None = Field(None, alias="templateID", max_length=100)


class WebhookEvent(BaseModel):
    """The part of an Ironclad webhook body this product reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    payload: _Payload
    company_id: str | None = Field(None, alias="companyID")
    webhook_id: str | None = Field(None, alias="webhookID")


def parse_event(body: bytes) -> WebhookEvent:
    """Raises pydantic.ValidationError when the body is not an Ironclad webhook event."""
    return WebhookEvent.model_validate_json(body)


class SignedContract(BaseModel):
    deal_id: str
    signature: SignatureCompleted


async def signed_contract(
    api: IroncladApi, workflow_id: str, *, signer_role: str
) -> SignedContract | None:
    """The deal and signature of a completed workflow this product launched, read from Ironclad.

    None when the workflow is not ours, or not (yet) signed. Ironclad's errors propagate.
    """
    workflow: dict[str, Any] = await api.get_workflow(workflow_id)
    deal_id = deal_id_of(workflow)
    if deal_id is None or workflow.get("status") != "completed":
        return None
    signature = signature_of(workflow, await api.get_signatures(workflow_id), signer_role)
    if signature is None:
        return None
    return SignedContract(
        deal_id=deal_id,
        signature=SignatureCompleted(
            envelope_id=workflow_id,
            completed_at=signature.completed_at,
            signer_name=signature.name,
            signer_email=signature.email,
        ),
    )


class IroncladWebhooks:
    """What the webhook route needs of Ironclad: the key cache and the workflow reader."""

    def __init__(self, settings: Settings) -> None:
        self.api = build_ironclad_api(settings)
        self.verifier = WebhookVerifier(
            self.api.verification_key, min_refetch_s=settings.ironclad_key_refetch_s
        )
        self.signer_role = settings.ironclad_signer_role

    async def verify(self, headers: dict[str, str], body: bytes) -> str:
        """The event id of a genuine webhook.

        Raises:
            VerificationError: Missing, malformed or not signed with Ironclad's key.
            IroncladUnreachable: The key could not be fetched.
        """
        try:
            return await self.verifier.verify(headers, body)
        except (IroncladHttpError, httpx.HTTPError) as exc:
            raise IroncladUnreachable(f"{type(exc).__name__}: {exc}") from exc

    async def signed_contract(self, workflow_id: str) -> SignedContract | None:
        """See ``signed_contract``; a workflow Ironclad does not know (404) is not ours either.

        Raises:
            IroncladUnreachable: Ironclad failed or could not be reached.
        """
        try:
            return await signed_contract(self.api, workflow_id, signer_role=self.signer_role)
        except IroncladHttpError as exc:
            if exc.status == 404:
                return None
            raise IroncladUnreachable(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise IroncladUnreachable(f"{type(exc).__name__}: {exc}") from exc
