"""Secured sessions against the simulator's OPC UA server with certificates made here."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.base import Quality
from drivers.opcua.device import OpcUaDeviceRunner
from drivers.opcua.security import CERT_FILE, KEY_FILE
from gateway.acquisition.models import PollGroup
from gateway.bus import Bus
from sim.opcua_server import SERVER_URI, OpcUaSecurity
from sim.runner import SimRunner
from tests.drivers.opcua.conftest import device_config
from tests.gateway.conftest import Recorder, demo_station

USER, PASSWORD = "heatgw", "correct horse battery staple"


def make_certificate(folder: Path, name: str, uri: str) -> tuple[Path, Path]:
    """A self-signed server application certificate (DER) and its key (PEM)."""
    key = generate_private_key()
    certificate = generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())],
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.pem"
    cert_path.write_bytes(certificate.public_bytes(Encoding.DER))
    key_path.write_bytes(dump_private_key_as_pem(key))
    return cert_path, key_path


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[SimRunner, Path]]:
    """The PLC offering only signed-and-encrypted endpoints and a user login; yields it and its certificate."""
    (tmp_path / "server").mkdir()
    certificate, key = make_certificate(tmp_path / "server", "plc", SERVER_URI)
    security = OpcUaSecurity(certificate, key, policies=("Basic256Sha256_SignAndEncrypt",
                                                         "Aes128Sha256RsaOaep_SignAndEncrypt"),
                             users={USER: PASSWORD})
    async with SimRunner(demo_station(), opcua_port=0, opcua_security=security, control_port=None,
                         tick_s=0.05) as runner:
        yield runner, certificate


async def run_until_told(tmp_path: Path, runner: SimRunner, policy: str, password: str) -> tuple[
        OpcUaDeviceRunner, Recorder]:
    assert runner.opcua is not None
    (tmp_path / "password").write_text(password + "\n")
    config = device_config(runner.opcua.endpoint, {
        "outdoor": {"node": "ns=plc;s=Outdoor.Temperature", "group": "fast"}},
        security={"mode": "SignAndEncrypt", "policy": policy, "trust_dir": str(tmp_path / "pki" / "trusted")},
        user={"username": USER, "password_file": str(tmp_path / "password")})
    bus = Bus()
    device = OpcUaDeviceRunner("plc", config, {"fast": PollGroup(interval_s=0.25)}, bus, state_dir=tmp_path / "state")
    recorder = Recorder(bus)
    return device, recorder


async def outcome(device: OpcUaDeviceRunner, recorder: Recorder) -> None:
    """Run the device until it is online or has reported its loss."""
    import asyncio

    async with recorder:
        task = asyncio.create_task(device.run())
        try:
            await recorder.wait_for(lambda: device.online is not None and (
                device.online is False or recorder.latest("outdoor") is not None), 20, "the session's outcome")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes128_Sha256_RsaOaep"])
async def test_sign_and_encrypt_with_a_trusted_server_and_the_right_password_delivers_values(
        tmp_path: Path, secured: tuple[SimRunner, Path], policy: str) -> None:
    runner, server_certificate = secured
    (tmp_path / "pki" / "trusted").mkdir(parents=True)
    (tmp_path / "pki" / "trusted" / "plc.der").write_bytes(server_certificate.read_bytes())
    device, recorder = await run_until_told(tmp_path, runner, policy, PASSWORD)
    await outcome(device, recorder)
    sample = recorder.latest("outdoor")
    assert device.online is True and sample is not None and sample.quality is Quality.GOOD
    created = x509.load_der_x509_certificate((tmp_path / "state" / "opcua" / CERT_FILE).read_bytes())
    uris = created.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "urn:heatgw:gateway" in uris.get_values_for_type(x509.UniformResourceIdentifier)  # made on first start
    assert (tmp_path / "state" / "opcua" / KEY_FILE).stat().st_mode & 0o077 == 0  # the key is ours alone


async def test_an_untrusted_server_certificate_is_refused_with_a_clear_message(
        tmp_path: Path, secured: tuple[SimRunner, Path]) -> None:
    runner, _ = secured
    other, _ = make_certificate(tmp_path, "someone-else", SERVER_URI)
    (tmp_path / "pki" / "trusted").mkdir(parents=True)
    (tmp_path / "pki" / "trusted" / "other.der").write_bytes(other.read_bytes())  # trusted, but not this server
    device, recorder = await run_until_told(tmp_path, runner, "Basic256Sha256", PASSWORD)
    await outcome(device, recorder)
    assert device.online is False and recorder.latest("outdoor") is not None
    reason = recorder.statuses("plc")[-1].reason
    assert "is not trusted" in reason and f"copy its certificate into {tmp_path / 'pki' / 'trusted'}" in reason
    assert len(list((tmp_path / "pki" / "rejected").glob("*.der"))) == 1  # kept for the operator to inspect
    assert recorder.latest("outdoor").quality is Quality.BAD  # type: ignore[union-attr]


async def test_a_wrong_password_is_refused_with_a_clear_message(
        tmp_path: Path, secured: tuple[SimRunner, Path]) -> None:
    runner, server_certificate = secured
    (tmp_path / "pki" / "trusted").mkdir(parents=True)
    (tmp_path / "pki" / "trusted" / "plc.der").write_bytes(server_certificate.read_bytes())
    device, recorder = await run_until_told(tmp_path, runner, "Basic256Sha256", "not the password")
    await outcome(device, recorder)
    assert device.online is False
    reason = recorder.statuses("plc")[-1].reason
    assert f"refused the login of user {USER!r}" in reason and "wrong user name or password?" in reason, reason
