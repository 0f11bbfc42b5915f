"""A throwaway certificate authority for the local cluster's SASL_SSL listener.

``stack up --sasl-ssl`` makes a CA and one certificate for the brokers (valid for
127.0.0.1 and localhost); clients trust the CA through ``SLUICEWAY_KAFKA_SSL_CA``. Nothing
here is meant for a real deployment: managed clusters come with their own certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 3650


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
    *, ca: bool,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(directory: Path, common: str = "Sluiceway local test CA") -> Path:
    """Write ca.pem and ca.key into ``directory`` unless there; the CA certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if not (cert_path.is_file() and key_path.is_file()):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(common, key, common, key, ca=True)
        key_path.touch(mode=0o600)
        key_path.write_bytes(_pem_key(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def make_server_keystore(directory: Path, ca_dir: Path) -> Path:
    """A PEM keystore (private key, then certificate and CA) for the brokers, signed by the
    CA in ``ca_dir``; written once, its path."""
    path = directory / "broker.pem"
    if path.is_file():
        return path
    ca_cert_pem = (ca_dir / "ca.pem").read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = ca_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    cert = _certificate("sluiceway-kafka", key, str(issuer), ca_key, ca=False)
    directory.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(_pem_key(key) + cert.public_bytes(serialization.Encoding.PEM) + ca_cert_pem)
    return path
