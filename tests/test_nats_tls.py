"""TLS towards a real nats-server: certificates made at test time with ``trustme`` (a throw-away CA, a server
certificate for 127.0.0.1, a client certificate), the CA and client certificate taken from ``[nats.tls]``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from hub.config import NatsConfig
from hub.nats.embedded import EmbeddedNats
from hub.nats.natsconn import connect
from tests.connecting import AN_HOUR, HANG_GUARD_S, connect_error


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of them


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("cityhub-client")
    files = Certificates(
        *(folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key", "other-ca.pem"))
    )
    ca.cert_pem.write_to_path(str(files.ca))
    other.cert_pem.write_to_path(str(files.other_ca))
    for issued, cert, key in (
        (server, files.server_cert, files.server_key),
        (client, files.client_cert, files.client_key),
    ):
        cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
    return files


def _tls_block(certs: Certificates, *, verify_clients: bool) -> str:
    verify = f'ca_file: "{certs.ca}", verify: true' if verify_clients else ""
    return f'tls {{ cert_file: "{certs.server_cert}", key_file: "{certs.server_key}", {verify} }}'


@pytest.fixture
def tls_url(tmp_path, certificates):
    """A nats-server that speaks only TLS, with the certificate for 127.0.0.1."""
    with EmbeddedNats(tmp_path / "nats", extra_config=_tls_block(certificates, verify_clients=False)) as server:
        yield server.url.replace("nats://", "tls://")


@pytest.fixture
def mutual_tls_url(tmp_path, certificates):
    """A nats-server that also demands a client certificate signed by the CA."""
    with EmbeddedNats(tmp_path / "nats", extra_config=_tls_block(certificates, verify_clients=True)) as server:
        yield server.url.replace("nats://", "tls://")


async def _round_trip(settings: NatsConfig) -> bytes:
    async with asyncio.timeout(HANG_GUARD_S):
        nc = await connect(settings)
        try:
            subscription = await nc.subscribe("cityhub.tls.check")
            await nc.publish("cityhub.tls.check", b"over tls")
            return (await subscription.next_msg(timeout=HANG_GUARD_S)).data
        finally:
            await nc.close()


async def test_the_ca_from_config_connects_to_a_tls_server_and_messages_flow(tls_url, certificates):
    assert await _round_trip(NatsConfig(servers=[tls_url], tls={"ca": certificates.ca})) == b"over tls"


async def test_a_client_certificate_from_config_passes_mutual_tls(mutual_tls_url, certificates):
    settings = NatsConfig(
        servers=[mutual_tls_url],
        tls={"ca": certificates.ca, "cert": certificates.client_cert, "key": certificates.client_key},
    )
    assert await _round_trip(settings) == b"over tls"


async def test_a_wrong_ca_fails_at_once_saying_the_certificate_was_not_accepted(tls_url, certificates):
    message = await connect_error(
        NatsConfig(servers=[tls_url], tls={"ca": certificates.other_ca}, initial_connect_wait=AN_HOUR)
    )
    assert message.startswith(f"the TLS certificate of NATS server {tls_url} was not accepted: ")
    assert "nats.tls.ca" in message


async def test_no_client_certificate_for_mutual_tls_fails_at_once(mutual_tls_url, certificates):
    message = await connect_error(
        NatsConfig(servers=[mutual_tls_url], tls={"ca": certificates.ca}, initial_connect_wait=AN_HOUR)
    )
    assert message.startswith(f"the TLS handshake with NATS server {mutual_tls_url} failed: ")
