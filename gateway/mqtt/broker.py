"""Logging in to a broker, the same way at both ends of the MQTT contract: the station's gateway
and the historian bridge read their ``BrokerSettings`` password file and build their TLS context here.

Both are read when the connection is set up, not at every reconnect, so a missing file or a bad
certificate is a configuration error at start (``heatgw check`` and the historian's settings loader
find the same problems first, with their line).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from gateway.mqtt.settings import TlsSettings


def read_password(password_file: Path | None) -> str | None:
    """The password: the first line of ``password_file``, stripped (None without a file); OSError if unreadable."""
    if password_file is None:
        return None
    lines = password_file.read_text(encoding="utf-8").splitlines()
    return lines[0].strip() if lines else ""


class TlsFileError(ValueError):
    """A TLS file that cannot be used, with the ``tls:`` field that names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """Trust the configured CA only (the system's store when none is configured, which a station's
    settings do not allow), and check the broker's host name.

    An encrypted key is refused rather than unlocked: nobody is at a station's console to type its
    passphrase (OpenSSL would otherwise ask on the terminal, and a service would wait forever)."""
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsFileError("ca_file", f"cannot load {tls.ca_file}: {exc}") from None
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
        except _EncryptedKey:
            raise TlsFileError("key_file", f"{tls.key_file} is encrypted: the gateway cannot type a passphrase, "
                                           "give it an unencrypted key readable by its user only") from None
        except (OSError, ssl.SSLError) as exc:
            raise TlsFileError("cert_file", f"cannot load {tls.cert_file} with key {tls.key_file}: {exc}") from None
    return context


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    raise _EncryptedKey
