"""HMAC webhook signing (hub.signing): what one side signs the other verifies; any change, a wrong secret or an
old timestamp is refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import signing
from hub.errors import HubError

NOW = 1_780_000_000.0


@given(secret=st.text(min_size=1), body=st.binary())
def test_signed_body_verifies(secret, body):
    headers = signing.signed_headers(secret, body, now=NOW)
    signing.verify(secret, headers[signing.TIMESTAMP_HEADER], headers[signing.SIGNATURE_HEADER], body, now=NOW + 10)


@given(body=st.binary(min_size=1), position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_is_refused(body, position, flip):
    headers = signing.signed_headers("s3cret", body, now=NOW)
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(
            "s3cret", headers[signing.TIMESTAMP_HEADER], headers[signing.SIGNATURE_HEADER], tampered, now=NOW
        )


@pytest.mark.parametrize(
    ("timestamp", "signature", "secret", "reason"),
    [
        (None, "ab", "s3cret", "missing"),
        ("yesterday", "ab", "s3cret", "not Unix seconds"),
        (str(int(NOW - 3600)), None, "s3cret", "missing"),
        (str(int(NOW - 3600)), "ab", "s3cret", "3600s away from now"),
        (str(int(NOW)), signing.sign("s3cret", str(int(NOW)), b"{}"), "other", "does not match"),
    ],
)
def test_refusals_say_why(timestamp, signature, secret, reason):
    with pytest.raises(signing.SignatureError, match=reason) as caught:
        signing.verify(secret, timestamp, signature, b"{}", now=NOW)
    assert isinstance(caught.value, HubError) and isinstance(caught.value, PermissionError)
