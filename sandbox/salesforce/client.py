"""A simple-salesforce client for the sandbox org, over TLS that trusts only the sandbox's CA.

simple-salesforce always builds ``https://`` URLs, so the emulator serves TLS with a certificate
issued at start-up by the sandbox's own CA (``sandbox.tls``). This client is a plain
``simple_salesforce.Salesforce`` whose ``requests.Session`` verifies the server against that CA
file alone (``verify=ca_file``). We chose that over ``verify=False`` or adding the CA to the system
trust store: verification stays on, nothing outside the sandbox is trusted more, and a client that
reaches a real org by mistake fails loudly instead of silently accepting any certificate.

An adapter that builds its own ``requests.Session`` for the sandbox must do the same two things:
``verify=<ca file>`` and ``trust_env=False`` (see below).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import requests
from simple_salesforce import Salesforce, SFType

from sandbox.salesforce.app import SANDBOX_SESSION_ID


def sandbox_salesforce(
    instance_url: str,
    ca_file: Path,
    session_id: str = SANDBOX_SESSION_ID,
    version: str = "59.0",
) -> Salesforce:
    """A client for the emulator at ``instance_url`` (``https://127.0.0.1:PORT``)."""
    session = requests.Session()
    session.verify = str(ca_file)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override ``session.verify`` when it reads
    # the environment, which would swap our CA for the system bundle; a local sandbox needs
    # nothing else from the environment (proxies, .netrc), so it is not read at all.
    session.trust_env = False
    return Salesforce(
        instance_url=instance_url, session_id=session_id, version=version, session=session
    )


def sobject(sf: Salesforce, name: str) -> SFType:
    """``sf.<name>`` with its type: simple-salesforce types attribute access as a union that also
    covers its bulk handlers, which a type checker cannot narrow from the name."""
    return cast(SFType, getattr(sf, name))
