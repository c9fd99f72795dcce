"""Connection settings: every authentication method maps onto nats.connect, secrets stay out of text."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import nkeys
import pytest
from pydantic import ValidationError

from hub.config import NatsConfig
from hub.errors import ConfigError
from hub.nats.embedded import EmbeddedNats, free_port
from hub.nats.natsconn import connect, connect_kwargs, redacted_servers
from tests.connecting import AN_HOUR, HANG_GUARD_S, connect_error
from tests.natsjwt import Identity, Operator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def password_server(tmp_path):
    """A nats-server that only lets in user ``ops`` with password ``s3cret-pw``."""
    with EmbeddedNats(tmp_path / "nats", extra_config='authorization { user: ops, password: "s3cret-pw" }') as server:
        yield server.url


@pytest.fixture
def token_server(tmp_path):
    """A nats-server that only lets in clients with the token ``t0ken-right``."""
    with EmbeddedNats(tmp_path / "nats", extra_config='authorization { token: "t0ken-right" }') as server:
        yield server.url


@pytest.fixture
def nkey_user(tmp_path):
    """A fresh NKey user: (seed file, public key)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    return seed_file, nkeys.from_seed(bytearray(seed)).public_key.decode()


async def test_nkey_seed_file_connects_to_a_server_that_knows_the_public_key(tmp_path, nkey_user):
    seed_file, public_key = nkey_user
    with EmbeddedNats(
        tmp_path / "nats", extra_config=f"authorization {{ users = [ {{ nkey: {public_key} }} ] }}"
    ) as server:
        nc = await connect(NatsConfig(servers=[server.url], nkey_seed_file=seed_file))
        assert nc.is_connected
        await nc.close()
        other_seed = tmp_path / "other.nk"
        other_seed.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        message = await connect_error(
            NatsConfig(servers=[server.url], nkey_seed_file=other_seed, initial_connect_wait=AN_HOUR)
        )
    assert "rejected the credentials" in message and "nkey_seed_file" in message


async def test_creds_file_connects_to_a_server_in_operator_mode(tmp_path):
    authority = Operator.fresh()
    with EmbeddedNats(tmp_path / "nats", extra_config=authority.server_config()) as server:
        nc = await connect(NatsConfig(servers=[server.url], creds_file=authority.creds(tmp_path / "user.creds")))
        assert (await nc.jetstream().account_info()).limits.max_streams == -1  # the account's JetStream is there
        await nc.close()
        stranger = Identity.fresh(nkeys.PREFIX_BYTE_ACCOUNT)  # an account the operator never signed
        message = await connect_error(
            NatsConfig(
                servers=[server.url],
                creds_file=authority.creds(tmp_path / "other.creds", signed_by=stranger),
                initial_connect_wait=AN_HOUR,
            )
        )
    assert "rejected the credentials" in message and "creds_file" in message


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
    assert connect_kwargs(NatsConfig(servers=["nats://a:4222"], creds_file=tmp_path / "u.creds"))[
        "user_credentials"
    ] == str(tmp_path / "u.creds")
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
        "nats://***@host:4222",
        "nats://h2:4222",
    ]


async def test_a_wrong_password_fails_the_first_connect_at_once_naming_the_server_not_the_secret(
    password_server, caplog
):
    settings = NatsConfig(servers=[password_server], user="ops", password="wr0ng-pw", initial_connect_wait=AN_HOUR)
    with caplog.at_level(logging.DEBUG, logger="cityhub.nats"):
        message = await connect_error(settings)
    assert message.startswith(f"NATS server {password_server} rejected the credentials (nats.user and nats.password)")
    assert "Authorization Violation" in message
    assert "wr0ng-pw" not in message + caplog.text


async def test_a_wrong_token_fails_the_first_connect_at_once(token_server):
    message = await connect_error(NatsConfig(servers=[token_server], token="t0ken-wrong", initial_connect_wait=AN_HOUR))
    assert message.startswith(f"NATS server {token_server} rejected the credentials (nats.token)")
    assert "t0ken-wrong" not in message


async def test_credentials_in_the_url_are_redacted_when_rejected(password_server):
    url = password_server.replace("nats://", "nats://ops:wr0ng-pw@")
    message = await connect_error(NatsConfig(servers=[url], initial_connect_wait=AN_HOUR))
    assert message.startswith(
        f"NATS server {password_server.replace('nats://', 'nats://***@')} rejected the "
        "credentials (the user:password@ in nats.servers)"
    )
    assert "wr0ng-pw" not in message


async def test_no_credentials_for_a_server_that_wants_them_says_what_to_set(token_server):
    message = await connect_error(NatsConfig(servers=[token_server], initial_connect_wait=AN_HOUR))
    assert "rejected the credentials (none configured: set nats.user and nats.password, nats.token" in message


async def test_a_server_that_never_comes_up_fails_after_the_initial_wait():
    url = f"nats://127.0.0.1:{free_port()}"
    message = await connect_error(NatsConfig(servers=[url], initial_connect_wait="1s"))
    assert message.startswith(f"no NATS server answered within 1 s: {url} (last error: ")
    assert "nats.initial_connect_wait" in message


async def test_a_server_that_comes_up_during_the_initial_wait_is_connected_to(tmp_path, caplog):
    port = free_port()
    settings = NatsConfig(servers=[f"nats://127.0.0.1:{port}"], initial_connect_wait=AN_HOUR)
    with caplog.at_level(logging.WARNING, logger="cityhub.nats"):
        connecting = asyncio.create_task(connect(settings))
        async with asyncio.timeout(HANG_GUARD_S):
            while "nats error" not in caplog.text:  # at least one attempt was refused
                await asyncio.sleep(0.02)
    with EmbeddedNats(tmp_path / "nats", port=port):
        async with asyncio.timeout(HANG_GUARD_S):
            nc = await connecting
        assert nc.is_connected
        await nc.close()


def test_cityhub_run_with_a_rejected_password_exits_1_saying_so(password_server, tmp_path):
    config = tmp_path / "cityhub.toml"
    config.write_text(
        f'[nats]\nservers = ["{password_server}"]\nuser = "ops"\npassword = "${{NATS_PASSWORD}}"\n'
        'initial_connect_wait = "1h"\n\n[admin]\nport = 0\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "run", "-c", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env={**os.environ, "PYTHONPATH": str(REPO), "NATS_PASSWORD": "wr0ng-pw"},
    )
    assert result.returncode == 1
    assert f"cityhub run: NATS server {password_server} rejected the credentials" in result.stderr
    assert "wr0ng-pw" not in result.stdout + result.stderr
