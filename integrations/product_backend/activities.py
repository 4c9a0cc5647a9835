"""The product-backend port over signed HTTP: turn the signed SKUs into a tenant's feature flags
and limits.

One signed POST per deal. The body is serialised once and those exact bytes are both signed and
sent, so the backend can verify their ``X-Qtc-Signature`` (``runtime.signing``). The
``Idempotency-Key`` is the deal id: a retry after a lost response provisions nothing twice, and a
409 (the same key already used with a different body) means the backend holds a different contract
for this deal, which no retry can fix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio import activity

from qtc import ports
from qtc.models import FeatureValue, PricedLine
from runtime.signing import SIGNATURE_HEADER, sign
from runtime.vendor_errors import from_http_status, unreachable

VENDOR = "product backend"
QUANTITY = "quantity"


def line_features(line: PricedLine) -> dict[str, FeatureValue]:
    """The line's features; a limit written ``"quantity"`` is the quantity signed for."""
    return {
        name: line.quantity if value == QUANTITY else value for name, value in line.features.items()
    }


def provision_body(input: ports.ProvisionInput) -> dict[str, Any]:
    priced = input.priced
    return {
        "tenant_id": input.tenant_id,
        "deal_id": input.deal_id,
        "account_name": priced.account.legal_name,
        "skus": [
            {"sku": line.sku, "quantity": line.quantity, "features": line_features(line)}
            for line in priced.lines
        ],
    }


class HttpProductBackend:
    """The product-backend port; the worker builds one ``httpx.Client`` and shares it."""

    def __init__(
        self,
        http: httpx.Client,
        url: str,
        secret: SecretStr,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._url = url
        self._secret = secret
        self._clock = clock

    @activity.defn(name=ports.ACT_PROVISION_PRODUCT)
    def provision_product(self, input: ports.ProvisionInput) -> ports.Provisioned:
        """Provision the tenant with the signed SKUs' features (idempotent per deal)."""
        body = provision_body(input)
        # Compact, key-sorted JSON: the same deal always produces the same bytes, so a retry
        # matches the backend's stored body for this Idempotency-Key.
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": input.deal_id,
            SIGNATURE_HEADER: sign(self._secret.get_secret_value(), raw, timestamp),
        }
        try:
            response = self._http.post(self._url, content=raw, headers=headers)
        except httpx.TransportError as exc:
            raise unreachable(VENDOR, exc) from exc
        if response.is_error:
            raise from_http_status(
                VENDOR,
                response.status_code,
                _message(response),
                response.headers,
                code=_code(response),
            )
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        activity.logger.info(
            "provisioned tenant %s for %s%s",
            input.tenant_id,
            input.deal_id,
            " (already provisioned)" if replayed else "",
        )
        return ports.Provisioned(
            tenant_id=input.tenant_id,
            features={s["sku"]: s["features"] for s in body["skus"]},
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    """The backend's explanation: RFC 9457 problem ``detail``/``title``, else the raw text."""
    body = _json(response)
    if isinstance(body, dict):
        for key in ("detail", "title", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return response.text[:500] or response.reason_phrase


def _code(response: httpx.Response) -> str | None:
    """The problem ``type`` (a URI naming the kind of failure), when given."""
    body = _json(response)
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return str(body["type"])
    return None
