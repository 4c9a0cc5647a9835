"""The DocuSign API client the worker shares: a JWT grant renewed before expiry, or the sandbox's
fixed token."""

from __future__ import annotations

import threading
import time
from typing import Any

import urllib3
from docusign_esign import (
    ApiClient,
)

from runtime.settings import Settings

SANDBOX_TOKEN = "sandbox-docusign-token"  # noqa: S105 - the documented sandbox-only value


class _JwtApiClient(ApiClient):
    """An ApiClient that renews its JWT-grant access token before it expires.

    A worker lives for weeks and DocuSign tokens for an hour; renewing inside ``call_api`` keeps
    every activity unaware of authentication.
    """

    def __init__(self, settings: Settings, lifetime_s: int = 3600) -> None:
        super().__init__(
            host=settings.docusign_base_path,
            base_path=settings.docusign_base_path,
            oauth_host_name=settings.docusign_oauth_host,
        )
        if settings.docusign_private_key is None:
            raise ValueError("QTC_DOCUSIGN_PRIVATE_KEY is required outside the sandbox")
        self._key = settings.docusign_private_key.get_secret_value().encode()
        self._integration_key = settings.docusign_integration_key
        self._user_id = settings.docusign_user_id
        self._oauth_host = settings.docusign_oauth_host
        self._lifetime_s = lifetime_s
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def _ensure_token(self) -> None:
        with self._lock:
            # Renew five minutes early so an in-flight call never carries an expired token.
            if time.monotonic() < self._expires_at - 300:
                return
            self.request_jwt_user_token(
                client_id=self._integration_key,
                user_id=self._user_id,
                oauth_host_name=self._oauth_host,
                private_key_bytes=self._key,
                expires_in=self._lifetime_s,
                scopes=["signature", "impersonation"],
            )
            self._expires_at = time.monotonic() + self._lifetime_s

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self._ensure_token()
        return super().call_api(*args, **kwargs)


def _without_sdk_retries(client: ApiClient) -> ApiClient:
    """Make the SDK's urllib3 pool fail fast instead of retrying on its own.

    urllib3's default retries would sleep out a 429's ``Retry-After`` inside the activity, pinning
    a worker thread and hiding the wait; Temporal's retry policy (which honours ``Retry-After``
    through ``next_retry_delay``) is the one place retries happen.
    """
    retries = urllib3.Retry(total=0, respect_retry_after_header=False, raise_on_status=False)
    client.rest_client.pool_manager.connection_pool_kw["retries"] = retries
    return client


def build_docusign_client(settings: Settings) -> ApiClient:
    """The worker's one DocuSign client: the sandbox bearer token, or JWT grant in production."""
    if settings.sandbox:
        client = ApiClient(
            host=settings.docusign_base_path,
            base_path=settings.docusign_base_path,
            oauth_host_name=settings.docusign_oauth_host,
        )
        client.set_default_header("Authorization", f"Bearer {SANDBOX_TOKEN}")
        return _without_sdk_retries(client)
    return _without_sdk_retries(_JwtApiClient(settings))
