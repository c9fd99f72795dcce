"""HMAC request signing for HTTP webhooks in both directions (external system → hub, hub → external system).

The signature is HMAC-SHA256, hex encoded, over ``<timestamp>.<body>`` where ``timestamp`` is Unix seconds as a
decimal string and ``body`` the exact request bytes. Both travel as headers (:data:`TIMESTAMP_HEADER`,
:data:`SIGNATURE_HEADER`); the receiver rejects a signature that does not match and a timestamp outside its
freshness window, so a captured request cannot be replayed later. The same scheme as Stripe and Slack webhooks,
which integrators' HTTP stacks already know how to produce.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from hub.errors import HubError

TIMESTAMP_HEADER = "X-CityHub-Timestamp"
SIGNATURE_HEADER = "X-CityHub-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class SignatureError(HubError, PermissionError):
    """A signed request whose signature is missing, wrong or too old; the message says which."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The timestamp and signature headers for sending ``body``."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(
    secret: str,
    timestamp: str | None,
    signature_hex: str | None,
    body: bytes,
    window_s: float,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``signature_hex`` signs ``body`` at a ``timestamp`` no more than
    ``window_s`` seconds from now (either direction, to tolerate clock skew)."""
    if not timestamp or not signature_hex:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix seconds, got {timestamp[:32]!r}") from None
    skew = abs((time.time() if now is None else now) - sent_at)
    if skew > window_s:
        raise SignatureError(f"{TIMESTAMP_HEADER} is {skew:.0f}s away from now (window {window_s:.0f}s)")
    if not hmac.compare_digest(signature(secret, timestamp, body), signature_hex.strip().lower()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body (wrong secret or altered body)")
