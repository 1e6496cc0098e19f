"""Request signing: what ``verify`` refuses, however the headers arrive."""

from __future__ import annotations

import pytest

from adapters.webhook.signing import SIGNATURE_HEADER, SignatureError, signed_headers, verify

SECRET = "test-webhook-secret"


def test_a_signature_header_that_is_not_utf8_is_refused_not_a_crash() -> None:
    body = b'{"message_id": "1"}'
    headers = signed_headers(SECRET, body)
    # aiohttp hands header bytes that are not UTF-8 (here 0xff) over as surrogate escapes.
    headers[SIGNATURE_HEADER] = "sha256=\udcff"
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, headers, body)


def test_the_right_signature_still_verifies() -> None:
    body = b'{"message_id": "1"}'
    verify(SECRET, signed_headers(SECRET, body), body)
