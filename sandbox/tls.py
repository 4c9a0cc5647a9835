"""A private certificate authority for the sandbox's HTTPS emulators.

simple-salesforce builds every URL as ``https://...``, so the Salesforce emulator must speak TLS.
Rather than turning certificate verification off in the client (which would also hide a real
misconfiguration against a real org), the sandbox creates its own small CA at start-up and a
server certificate for ``127.0.0.1`` and ``localhost`` signed by it. Clients trust exactly that CA
file and nothing else. Files are reused across restarts while they are valid, so a long-running
worker that loaded the CA keeps trusting a restarted emulator.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOSTNAMES = ("localhost",)
ADDRESSES = ("127.0.0.1",)
VALIDITY = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class TlsFiles:
    """Where the sandbox's CA certificate and server certificate/key live."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def ensure_certificates(directory: Path) -> TlsFiles:
    """Return usable TLS files under ``directory``, creating (or renewing) them when needed."""
    files = TlsFiles(
        ca_file=directory / "sandbox-ca.pem",
        cert_file=directory / "salesforce-cert.pem",
        key_file=directory / "salesforce-key.pem",
    )
    if not _still_valid(files):
        _write_new(files)
    return files


def _still_valid(files: TlsFiles) -> bool:
    if not (files.ca_file.exists() and files.cert_file.exists() and files.key_file.exists()):
        return False
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    return cert.not_valid_after_utc - RENEW_BEFORE > dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "QTC sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_new(files: TlsFiles) -> None:
    # Remove the CA first so a crash half-way leaves an incomplete set, which is regenerated.
    files.ca_file.unlink(missing_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("QTC sandbox local CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [
            *(x509.DNSName(h) for h in HOSTNAMES),
            *(x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ADDRESSES[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    files.ca_file.parent.mkdir(parents=True, exist_ok=True)
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_file.chmod(0o600)
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # The CA is written last: its presence marks a complete set for ``_still_valid``.
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
