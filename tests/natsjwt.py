"""Decentralised NATS auth for tests: an operator, an account and users as signed JWTs (the format nsc writes),
so the creds-file path is exercised against a real nats-server in operator mode. Claims follow nats-io/jwt v2:
base64url JSON header and claims, an Ed25519 signature by the issuer's NKey, ``jti`` the SHA-512/256 of the
claims written without it."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
import orjson

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}  # not for the system account


@dataclass
class Identity:
    seed: bytes
    public_key: str

    @classmethod
    def fresh(cls, prefix: int) -> Identity:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        return cls(seed, nkeys.from_seed(bytearray(seed)).public_key.decode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(issuer: Identity, subject: str, nats: dict[str, Any]) -> str:
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key,
        "name": subject[:8],
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    jti = hashlib.new("sha512_256", orjson.dumps({"jti": "", **claims})).digest()
    claims = {"jti": base64.b32encode(jti).rstrip(b"=").decode(), **claims}
    signing_input = f"{_b64(orjson.dumps(_HEADER))}.{_b64(orjson.dumps(claims))}"
    signature = nkeys.from_seed(bytearray(issuer.seed)).sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


@dataclass
class Operator:
    """An operator with an application account and the system account JetStream needs; :meth:`server_config`
    trusts them, :meth:`creds` issues users."""

    operator: Identity
    account: Identity
    system: Identity

    @classmethod
    def fresh(cls) -> Operator:
        return cls(
            *(
                Identity.fresh(prefix)
                for prefix in (nkeys.PREFIX_BYTE_OPERATOR, nkeys.PREFIX_BYTE_ACCOUNT, nkeys.PREFIX_BYTE_ACCOUNT)
            )
        )

    def server_config(self) -> str:
        operator_jwt = signed_jwt(self.operator, self.operator.public_key, {"type": "operator"})
        claims = [
            (self.account, {"type": "account", "limits": {**_UNLIMITED, **_JETSTREAM}}),
            (self.system, {"type": "account", "limits": _UNLIMITED}),
        ]
        accounts = ", ".join(
            f"{account.public_key}: {signed_jwt(self.operator, account.public_key, claim)}" for account, claim in claims
        )
        return (
            f"operator: {operator_jwt}\nsystem_account: {self.system.public_key}\nresolver: MEMORY\n"
            f"resolver_preload: {{ {accounts} }}\n"
        )

    def creds(self, path: Path, signed_by: Identity | None = None) -> Path:
        """A creds file for a new user of the account (or signed by another account, which the server rejects)."""
        user = Identity.fresh(nkeys.PREFIX_BYTE_USER)
        user_jwt = signed_jwt(
            signed_by or self.account,
            user.public_key,
            {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
        )
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
        )
        return path
