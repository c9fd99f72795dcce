"""hub.signing: the HMAC webhook signature, against the standard library's hmac as oracle."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, sign, signed_headers, verify

NOW = 1_782_900_000.0


@given(secret=st.text(min_size=1), body=st.binary(), at=st.integers(min_value=0, max_value=2**33))
def test_signature_is_hmac_sha256_of_timestamp_dot_body(secret, body, at):
    expected = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    assert sign(secret, str(at), body) == expected


@given(secret=st.text(min_size=1), body=st.binary(), skew=st.integers(min_value=-300, max_value=300))
def test_what_is_signed_verifies_within_the_window(secret, body, skew):
    headers = signed_headers(secret, body, now=NOW + skew)
    verify(secret, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER].upper(), body, tolerance_s=300, now=NOW)


@given(body=st.binary(), tampered=st.binary())
def test_another_body_or_secret_does_not_verify(body, tampered):
    headers = signed_headers("right", body, now=NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify("wrong", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, tolerance_s=300, now=NOW)
    if tampered != body:
        with pytest.raises(SignatureError, match="does not match"):
            verify("right", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], tampered, tolerance_s=300, now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "sig", "message"),
    [
        (None, "ab", "missing"),
        ("1782900000", None, "missing"),
        ("yesterday", "ab", "is not Unix seconds"),
        (str(int(NOW) - 301), "ab", "away from now"),
        (str(int(NOW) + 301), "ab", "away from now"),
    ],
)
def test_unusable_headers_say_what_is_wrong(timestamp, sig, message):
    with pytest.raises(SignatureError, match=message) as caught:
        verify("secret", timestamp, sig, b"{}", tolerance_s=300, now=NOW)
    assert isinstance(caught.value, PermissionError)
