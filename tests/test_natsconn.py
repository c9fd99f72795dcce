"""Connection settings: every authentication method maps onto nats.connect, secrets stay out of text."""

from __future__ import annotations

import logging
import subprocess
import time

import pytest
from pydantic import ValidationError

from hub.embedded import free_port, nats_server_binary
from hub.errors import ConfigError
from hub.config import NatsConfig
from hub.natsconn import connect, connect_kwargs, redacted_servers


@pytest.fixture
def password_server():
    """A nats-server that only lets in user ``ops`` with password ``s3cret-pw``."""
    port = free_port()
    process = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "--user", "ops", "--pass", "s3cret-pw"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    yield f"nats://127.0.0.1:{port}"
    process.terminate()
    process.wait()


async def test_user_password_connects_and_secret_is_not_logged(password_server, caplog):
    settings = NatsConfig(servers=[password_server], user="ops", password="s3cret-pw")
    with caplog.at_level(logging.DEBUG, logger="cityhub.nats"):
        nc = await connect(settings)
        assert nc.is_connected
        await nc.close()
    assert "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in repr(settings)


def test_kwargs_cover_token_creds_nkey_and_several_urls(tmp_path):
    token = connect_kwargs(NatsConfig(servers=["nats://a:4222", "nats://b:4222"], token="t0k"))
    assert token["servers"] == ["nats://a:4222", "nats://b:4222"]
    assert token["token"] == "t0k"
    assert connect_kwargs(NatsConfig(servers=["nats://a:4222"], creds_file=tmp_path / "u.creds"))["user_credentials"] == str(
        tmp_path / "u.creds"
    )
    assert connect_kwargs(NatsConfig(servers=["nats://a:4222"], nkey_seed_file=tmp_path / "seed"))["nkeys_seed"] == str(
        tmp_path / "seed"
    )


def test_tls_url_gets_a_tls_context():
    kwargs = connect_kwargs(NatsConfig(servers=["tls://nats.city.gov:4222"]))
    assert kwargs["tls"].check_hostname


def test_two_auth_methods_are_an_error():
    with pytest.raises(ValidationError, match="choose one way to authenticate"):
        NatsConfig(servers=["nats://a:4222"], token="t", user="u", password="p")


def test_no_url_is_a_config_error():
    with pytest.raises(ConfigError, match="nats.servers is empty"):
        connect_kwargs(NatsConfig())


def test_credentials_in_urls_are_redacted():
    assert redacted_servers(NatsConfig(servers=["nats://ops:pw@host:4222", "nats://h2:4222"])) == [
        "nats://***@host:4222", "nats://h2:4222",
    ]
