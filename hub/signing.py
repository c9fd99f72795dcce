"""HMAC request signing for webhooks in and out: ``HMAC-SHA256(secret, timestamp + "." + body)``, hex.

The sender puts the Unix timestamp (seconds) and the signature in two headers; the receiver recomputes the
signature over the exact body bytes and refuses stale timestamps, so a captured request cannot be replayed
later. Header names are the defaults; vendors that use other names configure them per connector.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from hub.errors import HubError

SIGNATURE_HEADER = "X-CityHub-Signature"
TIMESTAMP_HEADER = "X-CityHub-Timestamp"


class SignatureError(HubError, PermissionError):
    """A request whose signature is missing, wrong or too old; the message says which."""


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The hex signature of ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str | bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers a sender adds to a POST of ``body``."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str | bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``signature`` signs ``body`` at a ``timestamp`` within
    ``tolerance_s`` of now."""
    if not timestamp or not signature:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise SignatureError(f"timestamp {timestamp[:32]!r} is not Unix seconds") from None
    skew = abs((time.time() if now is None else now) - sent_at)
    if skew > tolerance_s:
        raise SignatureError(f"timestamp is {skew:.0f}s away from now (allowed {tolerance_s:.0f}s)")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower()):
        raise SignatureError("signature does not match the body")
