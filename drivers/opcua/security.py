"""The gateway's OPC UA identity and whom it trusts: its application certificate, the trust list,
and the login from a password file.

An OPC UA server proves who it is with its application certificate. The gateway accepts a server
only when that certificate is in the trust list directory (as a DER or PEM file), byte for byte:
trusting on first use would let whoever answers first on the station network feed the
controller. A refused certificate is saved under ``rejected/`` beside the trust list, so the
operator can inspect it and move it into the trust list if it is the right one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.base import DeviceRefused, DeviceUnreachable
from drivers.opcua.config import Security, UserLogin
from gateway.logs import kv

log = logging.getLogger(__name__)

CERT_FILE = "gateway-cert.der"
KEY_FILE = "gateway-key.pem"
CERT_DAYS = 3650  # a station gateway lives ten years; renewing means re-trusting it on every PLC

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


class UntrustedServer(DeviceRefused):
    """The server's certificate is not in the trust list: the session is not opened."""


class LoginRefused(DeviceRefused):
    """The server refused the user name and password."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The files the client signs and decrypts with."""

    certificate: Path
    private_key: Path


def gateway_identity(security: Security, state_dir: Path | None) -> Identity:
    """The gateway's certificate and key, created (with the application URI) when absent.

    Configured paths win; otherwise they live in ``<state_dir>/opcua/``.
    """
    if security.certificate is not None and security.private_key is not None:
        identity = Identity(security.certificate, security.private_key)
    elif state_dir is not None:
        identity = Identity(state_dir / "opcua" / CERT_FILE, state_dir / "opcua" / KEY_FILE)
    else:
        raise DeviceUnreachable("a secured OPC UA session needs the gateway's certificate: give "
                                "security.certificate and security.private_key, or run the gateway with a state directory")
    if not identity.certificate.exists() or not identity.private_key.exists():
        try:
            create_identity(identity, security.application_uri)
        except OSError as exc:
            raise DeviceUnreachable(f"cannot create the gateway's certificate at {identity.certificate}: "
                                    f"{exc.strerror or exc}") from None
    return identity


def create_identity(identity: Identity, application_uri: str) -> None:
    """A self-signed application certificate (OPC 10000-6 6.2.2) and its key, the key readable by us only."""
    identity.certificate.parent.mkdir(parents=True, exist_ok=True)
    identity.private_key.parent.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    host = socket.gethostname()
    certificate = generate_self_signed_app_certificate(
        key, "heatgw gateway", {"organizationName": "heatgw"},
        [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host)],
        [ExtendedKeyUsageOID.CLIENT_AUTH], days=CERT_DAYS)
    descriptor = os.open(identity.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(dump_private_key_as_pem(key))
    identity.certificate.write_bytes(certificate.public_bytes(Encoding.DER))
    log.info("opcua application certificate created", extra=kv(
        certificate=str(identity.certificate), application_uri=application_uri, thumbprint=thumbprint(
            certificate.public_bytes(Encoding.DER))))


def thumbprint(der: bytes) -> str:
    """SHA-1 thumbprint, as OPC UA tools (UaExpert, PLC web pages) show a certificate."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def _der(path: Path) -> bytes | None:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError:
        log.warning("not a certificate in the OPC UA trust list, ignored", extra=kv(file=str(path)))
        return None


def check_trusted(server_der: bytes, trust_dir: Path, endpoint: str) -> None:
    """Refuse (``UntrustedServer``) a server whose certificate is not in ``trust_dir``."""
    trusted = {_der(path) for path in sorted(trust_dir.glob("*")) if path.is_file()} if trust_dir.is_dir() else set()
    if server_der in trusted:
        return
    subject = x509.load_der_x509_certificate(server_der).subject.rfc4514_string()
    digest = thumbprint(server_der)
    rejected = trust_dir.parent / "rejected"
    try:
        rejected.mkdir(parents=True, exist_ok=True)
        (rejected / f"{digest}.der").write_bytes(server_der)
        saved = f"; it was saved as {rejected / (digest + '.der')}"
    except OSError:
        saved = ""
    raise UntrustedServer(
        f"server certificate of {endpoint} is not trusted ({subject}, SHA-1 {digest}): if it is the right "
        f"server, copy its certificate into {trust_dir}{saved}")


def server_certificate(endpoints: list[ua.EndpointDescription], security: Security, endpoint: str) -> bytes:
    """The certificate of the endpoint offering the configured policy and mode."""
    policy = POLICIES[security.policy]
    wanted = MODES[security.mode]
    for description in endpoints:
        if description.SecurityPolicyUri == policy.URI and description.SecurityMode == wanted:
            if not description.ServerCertificate:
                raise DeviceRefused(f"{endpoint} offers {security.policy} {security.mode} without a certificate")
            return bytes(description.ServerCertificate)
    offered = sorted({f"{d.SecurityPolicyUri.rsplit('#', 1)[-1]} {d.SecurityMode.name}" for d in endpoints})
    raise DeviceRefused(f"{endpoint} does not offer {security.policy} {security.mode}; it offers: {', '.join(offered)}")


def read_password(login: UserLogin) -> str:
    """The password file's first line (a trailing newline is not part of the password)."""
    try:
        return login.password_file.read_text().splitlines()[0] if login.password_file.stat().st_size else ""
    except OSError as exc:
        raise DeviceUnreachable(f"cannot read the password file {login.password_file}: {exc.strerror}") from None
