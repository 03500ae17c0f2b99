"""The demo's TLS certificate: a self-signed one for localhost, made once and kept in the demo's dir.

Owns generating, checking and reusing that certificate and its key (PEM files the pg listener's
`tls: {cert, key}` reads). Knows nothing of sockets or the proxy; a production deployment brings
its own certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT = "server.crt"
KEY = "server.key"
VALID_DAYS = 365
# A certificate this close to its end is replaced rather than reused.
RENEW_BEFORE = datetime.timedelta(days=7)


def _usable(cert_path: Path, key_path: Path, now: datetime.datetime) -> bool:
    """Whether the files hold a certificate valid for a while yet and the key that signs for it."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    if not (cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc):
        return False
    mine = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return mine == theirs


def demo_certificate(directory: Path, now: datetime.datetime | None = None) -> tuple[Path, Path, bool]:
    """(certificate, key, made): the demo's certificate for localhost / 127.0.0.1 in `directory`,
    reused when present and valid for more than RENEW_BEFORE, made (EC P-256, self-signed)
    otherwise. The key file is readable by its owner only."""
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT, directory / KEY
    if _usable(cert_path, key_path, now):
        return cert_path, key_path, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.touch(mode=0o600)
    key_path.chmod(0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, True
