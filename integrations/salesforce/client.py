"""The Salesforce client the worker and the API share: one pooled session with a timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simple_salesforce import Salesforce

from runtime.http import PooledSession
from runtime.settings import Settings


class _ClientSession(PooledSession):
    """The session simple-salesforce sends every request through.

    simple-salesforce passes no timeout, so a hung socket would pin a worker thread forever; and
    requests lets ``REQUESTS_CA_BUNDLE`` override ``session.verify`` unless ``verify`` is passed
    per request, which would silently drop a configured CA file.
    """

    def __init__(self, timeout_s: float, ca_file: str | None, pool_size: int = 10) -> None:
        super().__init__(pool_size)
        self._timeout_s = timeout_s
        if ca_file is not None:
            self.verify = ca_file

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout_s)
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


# Where the sandbox's stack runner leaves the emulators' CA under the state directory; spelled out
# here so the product does not import the emulators to find one file.
SANDBOX_CA_FILE = Path("emulators") / "tls" / "sandbox-ca.pem"


def salesforce_ca_file(settings: Settings) -> Path | None:
    """The CA bundle the Salesforce client trusts.

    ``QTC_SALESFORCE_CA_FILE`` when set; in the sandbox, the emulators' own CA under the state
    directory when it exists (so ``qtc sandbox up`` and ``qtc worker`` need no extra setting);
    otherwise ``None``: the system's trust store, as for a real org.
    """
    if settings.salesforce_ca_file is not None:
        return settings.salesforce_ca_file
    candidate = settings.state_dir / SANDBOX_CA_FILE
    if settings.sandbox and candidate.exists():
        return candidate
    return None


def build_salesforce_client(settings: Settings) -> Salesforce:
    """The worker's one Salesforce client: a session id (sandbox, or a token from your own OAuth
    flow) or username + password + security token, which simple-salesforce refreshes itself."""
    ca_file = salesforce_ca_file(settings)
    session = _ClientSession(
        settings.salesforce_timeout_s,
        str(ca_file) if ca_file else None,
        pool_size=settings.worker_activity_threads,
    )
    if settings.salesforce_username and settings.salesforce_password:
        return Salesforce(
            username=settings.salesforce_username,
            password=settings.salesforce_password.get_secret_value(),
            security_token=(
                settings.salesforce_security_token.get_secret_value()
                if settings.salesforce_security_token
                else ""
            ),
            domain=settings.salesforce_domain,
            version=settings.salesforce_api_version,
            session=session,
        )
    if settings.salesforce_session_id is None:
        raise ValueError(
            "set QTC_SALESFORCE_SESSION_ID or QTC_SALESFORCE_USERNAME and QTC_SALESFORCE_PASSWORD"
        )
    return Salesforce(
        instance_url=settings.salesforce_instance_url,
        session_id=settings.salesforce_session_id.get_secret_value(),
        version=settings.salesforce_api_version,
        session=session,
    )
