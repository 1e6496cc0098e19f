"""Request signing: what ``verify`` refuses, however the headers arrive, and for what each
signature was made."""

from __future__ import annotations

import pytest

from adapters.webhook.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Purpose,
    SignatureError,
    signature,
    signed_headers,
    verify,
)

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


PURPOSES: tuple[Purpose, ...] = ("message", "forget", "callback")


@pytest.mark.parametrize(
    ("signed_for", "checked_for"),
    [(made, checked) for made in PURPOSES for checked in PURPOSES if made != checked],
)
def test_a_signature_made_for_one_purpose_verifies_for_no_other(
    signed_for: Purpose, checked_for: Purpose
) -> None:
    body = b'{"message_id": "1", "user_id": "u", "text": "hi"}'
    headers = signed_headers(SECRET, body, purpose=signed_for)
    verify(SECRET, headers, body, purpose=signed_for)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, headers, body, purpose=checked_for)


@pytest.mark.parametrize("spelling", ["+{ts}", " {ts}", "{ts} ", "{ts}.0", "-{ts}"])
def test_a_timestamp_is_unix_seconds_in_digits_only(spelling: str) -> None:
    body = b"{}"
    headers = signed_headers(SECRET, body)
    timestamp = spelling.format(ts=headers[TIMESTAMP_HEADER])
    headers[TIMESTAMP_HEADER] = timestamp
    headers[SIGNATURE_HEADER] = signature(SECRET, timestamp, body)
    with pytest.raises(SignatureError, match="unix seconds"):
        verify(SECRET, headers, body)
