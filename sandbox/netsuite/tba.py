"""Token-based authentication as NetSuite checks it: OAuth 1.0a (RFC 5849), HMAC-SHA256.

Written from the RFC rather than with the client's signing library, so a bug shared by the
adapter's signer and this verifier cannot make a wrong signature pass.

Every failure is reported to the caller the way NetSuite reports it, as one ``INVALID_LOGIN``
(NetSuite never says which part was wrong); the reason is kept for ``GET /_sandbox/requests``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

TIMESTAMP_TOLERANCE_S = 300
_NONCE = re.compile(r"^[A-Za-z0-9]{6,64}$")
_PARAM = re.compile(r'\s*([A-Za-z_]+)="([^"]*)"\s*')


class AuthFailure(Exception):
    """The request is not authenticated; the message says why (for the sandbox log only)."""


@dataclass(frozen=True)
class Credentials:
    account: str
    consumer_key: str
    consumer_secret: str
    token_id: str
    token_secret: str


def pct(value: str) -> str:
    """RFC 5849 section 3.6: percent-encode everything but the unreserved characters."""
    return quote(value, safe="-._~")


def parse_authorization(header: str | None) -> dict[str, str]:
    """The parameters of an ``Authorization: OAuth k="v", ...`` header, decoded."""
    if not header or not header[:6].lower() == "oauth ":
        raise AuthFailure("no OAuth Authorization header")
    params: dict[str, str] = {}
    for part in header[6:].split(","):
        if not part.strip():
            continue
        match = _PARAM.fullmatch(part)
        if match is None:
            raise AuthFailure(f"malformed Authorization parameter {part.strip()[:40]!r}")
        name, value = match.group(1), unquote(match.group(2))
        if name in params:
            raise AuthFailure(f"parameter {name} given twice")
        params[name] = value
    return params


def base_string(method: str, base_uri: str, query: str, oauth: dict[str, str]) -> str:
    """The signature base string of RFC 5849 section 3.4.1 (the JSON body is not part of it)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    pairs += [(k, v) for k, v in oauth.items() if k not in ("oauth_signature", "realm")]
    encoded = sorted((pct(k), pct(v)) for k, v in pairs)
    normalized = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join((method.upper(), pct(base_uri), pct(normalized)))


def signature(
    method: str, base_uri: str, query: str, oauth: dict[str, str], secrets: tuple[str, str]
) -> str:
    key = f"{pct(secrets[0])}&{pct(secrets[1])}".encode()
    text = base_string(method, base_uri, query, oauth).encode()
    return base64.b64encode(hmac.new(key, text, hashlib.sha256).digest()).decode()


@dataclass
class TbaVerifier:
    """Checks TBA headers for one account; remembers nonces for the timestamp window."""

    credentials: Credentials
    clock: Callable[[], float]
    tolerance_s: int = TIMESTAMP_TOLERANCE_S
    _nonces: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, method: str, base_uri: str, query: str, header: str | None) -> None:
        """Raise ``AuthFailure`` unless the header authenticates this exact request."""
        creds = self.credentials
        oauth = parse_authorization(header)
        if oauth.get("realm") != creds.account:
            raise AuthFailure(f"realm must be the account id {creds.account!r}")
        if oauth.get("oauth_signature_method") != "HMAC-SHA256":
            raise AuthFailure("oauth_signature_method must be HMAC-SHA256")
        if oauth.get("oauth_version", "1.0") != "1.0":
            raise AuthFailure("oauth_version must be 1.0")
        if oauth.get("oauth_consumer_key") != creds.consumer_key:
            raise AuthFailure("unknown consumer key (no such integration record)")
        if oauth.get("oauth_token") != creds.token_id:
            raise AuthFailure("unknown or revoked token")
        timestamp = oauth.get("oauth_timestamp", "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise AuthFailure("oauth_timestamp must be Unix seconds")
        now = self.clock()
        if abs(now - int(timestamp)) > self.tolerance_s:
            raise AuthFailure(f"oauth_timestamp is more than {self.tolerance_s} s from now")
        nonce = oauth.get("oauth_nonce", "")
        if not _NONCE.match(nonce):
            raise AuthFailure("oauth_nonce must be 6-64 letters and digits")
        expected = signature(
            method, base_uri, query, oauth, (creds.consumer_secret, creds.token_secret)
        )
        if not hmac.compare_digest(expected, oauth.get("oauth_signature", "")):
            raise AuthFailure("signature does not match the request")
        with self._lock:
            for seen, at in list(self._nonces.items()):
                if now - at > 2 * self.tolerance_s:
                    del self._nonces[seen]
            if nonce in self._nonces:
                raise AuthFailure("oauth_nonce was used before (replayed request)")
            self._nonces[nonce] = now
