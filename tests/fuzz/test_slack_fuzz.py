"""Fuzzing ``POST /slack/events``, ``/slack/commands`` and ``/slack/interactivity``: events,
``url_verification``, slash commands (form-encoded) and button clicks (a ``payload`` field of
JSON) with hostile fields, signed with the signing secret; also stale, wrong, missing and
malformed signatures, any JSON, broken JSON, forms and bytes, and lying Content-Types.

Documented answers (README, "Slack"): 2xx once the durable part is stored (an event the app
does not act on is 200 too); 401 for a bad signature or a timestamp over 5 minutes off; 400
for a body that is no Slack request; 404 for a command or action the app does not handle;
413 over 64 KiB. The store is healthy here, so a 503 ("retry") would be a crash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack_api import (
    SIGNING_SECRET,
    STAFF_USER_ID,
    SUPPORT_CHANNEL,
    action_body,
    command_body,
    event_body,
    thread_message,
)
from tests.fuzz.harness import FUZZ, FuzzStack, assert_clean, no_errors_logged
from tests.fuzz.strategies import (
    dumps,
    either,
    header_values,
    hostile_json,
    json_values,
    strings,
    texts,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

STATUSES = {200, 400, 401, 404, 413}
PATHS = ["/slack/events", "/slack/commands", "/slack/interactivity"]
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Signing:
    """``valid`` (now), ``stale`` (10 minutes ago), ``wrong`` (another secret), ``none``, or
    ``raw`` (the two headers as the given bytes; no timestamp: now)."""

    kind: str
    timestamp: bytes | None = None
    signature: bytes = b""

    def headers(self, body: bytes) -> list[tuple[str, str | bytes]]:
        now = int(time.time())
        if self.kind == "none":
            return []
        if self.kind == "raw":
            sent = str(now).encode() if self.timestamp is None else self.timestamp
            return [("X-Slack-Request-Timestamp", sent), ("X-Slack-Signature", self.signature)]
        ts = str(now - 600 if self.kind == "stale" else now)
        secret = "another-signing-secret" if self.kind == "wrong" else SIGNING_SECRET
        # Slack's v0 signature, over bytes: SignatureVerifier signs text only.
        mac = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
        return [("X-Slack-Request-Timestamp", ts), ("X-Slack-Signature", "v0=" + mac.hexdigest())]


VALID = Signing("valid")
raw_signings = st.builds(
    Signing,
    st.just("raw"),
    st.one_of(st.none(), header_values, st.integers().map(lambda n: str(n).encode())),
    st.one_of(header_values, header_values.map(lambda v: b"v0=" + v)),
)
signings = st.one_of(
    st.just(VALID),
    st.just(VALID),
    st.just(VALID),
    st.sampled_from([Signing("stale"), Signing("wrong"), Signing("none")]),
    raw_signings,
)

ts_values = either(st.sampled_from(["1700000000.000100", "1.0", "", "x"]))
staff_events = st.builds(
    lambda base, fields: {**base, **fields},
    st.builds(
        thread_message,
        either(st.one_of(st.sampled_from(["thanks, refunded", "// note", "<@U1> *hi*"]), texts)),
        st.sampled_from(["1700000000.000100", "1700000000.000200"]),
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "channel": either(st.sampled_from([SUPPORT_CHANNEL, "C0OTHER"])),
            "user": either(st.sampled_from([STAFF_USER_ID, ""])),
            "ts": ts_values,
            "thread_ts": ts_values,
            "subtype": either(st.sampled_from(["thread_broadcast", "message_changed"])),
            "bot_id": either(st.just("B0BOT")),
            "type": either(st.sampled_from(["message", "app_mention", "reaction_added"])),
        },
    ),
)
event_envelopes = st.one_of(
    st.builds(lambda e, i: json.loads(event_body(e, i)), either(staff_events), strings),
    st.fixed_dictionaries(
        {"type": either(st.just("url_verification"))}, optional={"challenge": either(strings)}
    ),
    st.builds(
        lambda fields, extra: {**extra, **fields},
        st.fixed_dictionaries(
            {},
            optional={
                "type": either(st.sampled_from(["event_callback", "app_rate_limited"])),
                "event": either(staff_events),
                "team_id": either(st.just("T0001")),
                "authorizations": either(st.lists(json_values, max_size=2)),
                "enterprise": json_values,
                "team": json_values,
                "is_ext_shared_channel": either(st.booleans()),
            },
        ),
        st.dictionaries(strings, json_values, max_size=2),
    ),
)

command_texts = either(
    st.one_of(
        st.sampled_from(
            [
                "stats",
                "takeover T123",
                "release T123",
                "takeover",
                "peak on",
                "peak auto",
                "peak 9",
                "help",
                "",
            ]
        ),
        strings,
    )
)
commands = st.one_of(
    st.builds(
        lambda text, user, command: command_body(text, user, command),
        st.one_of(st.sampled_from(["stats", "takeover T123", "peak bogus"]), texts),
        st.sampled_from([STAFF_USER_ID, ""]),
        st.sampled_from(["/peakdesk", "/other"]),
    ),
    st.dictionaries(
        st.sampled_from(["command", "text", "user_id", "team_id", "ssl_check", "payload"]),
        st.one_of(command_texts.map(str), st.just("/peakdesk")),
    ).map(urlencode),
)

actions = st.fixed_dictionaries(
    {"action_id": either(st.sampled_from(["takeover", "release", "resolve", "other"]))},
    optional={"value": either(st.sampled_from(["Tabc", ""])), "type": either(st.just("button"))},
)
interactions = st.one_of(
    st.builds(action_body, st.sampled_from(["takeover", "release", "resolve"]), texts),
    st.builds(
        lambda fields: urlencode({"payload": json.dumps(fields)}),
        st.fixed_dictionaries(
            {"type": either(st.just("block_actions"))},
            optional={
                "user": either(st.fixed_dictionaries({"id": either(st.just(STAFF_USER_ID))})),
                "actions": either(st.lists(either(actions), max_size=2)),
                "team": json_values,
                "channel": json_values,
                "container": json_values,
                "view": json_values,
            },
        ),
    ),
    json_values.map(lambda value: urlencode({"payload": json.dumps(value)})),
)

bodies = st.one_of(
    event_envelopes.map(dumps),
    commands.map(str.encode),
    interactions.map(str.encode),
    json_values.map(dumps),
    hostile_json,
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=120),
)
content_types = st.one_of(
    st.none(), st.sampled_from(["application/json", FORM, "text/plain"]), header_values
)


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    body=bodies,
    signing=signings,
    content_type=content_types,
    retry=st.one_of(st.none(), st.sampled_from([b"1", b"3", b"x"]), header_values),
)
async def test_no_slack_request_gets_a_5xx_or_crashes_a_listener(
    stack: FuzzStack,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: bytes,
    signing: Signing,
    content_type: str | bytes | None,
    retry: bytes | None,
) -> None:
    headers: list[tuple[str, Any]] = signing.headers(body)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if retry is not None:
        headers += [("X-Slack-Retry-Num", retry), ("X-Slack-Retry-Reason", b"http_timeout")]
    with no_errors_logged(caplog):
        answer = await stack.send("POST", path, headers, body)
    event(f"{path} HTTP {answer.status}")
    assert_clean(answer, STATUSES)
    if signing is not VALID and b"ssl_check" not in body:  # nothing unsigned gets further
        assert answer.status == (401 if _is_utf8(body) else 400), answer


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    body=st.one_of(
        event_envelopes.map(dumps), commands.map(str.encode), interactions.map(str.encode)
    ),
)
async def test_signed_slack_payloads_are_acted_on_or_refused_with_a_reason(
    stack: FuzzStack, caplog: pytest.LogCaptureFixture, path: str, body: bytes
) -> None:
    content_type = "application/json" if body.startswith(b"{") else FORM
    headers = [*VALID.headers(body), ("Content-Type", content_type)]
    with no_errors_logged(caplog):
        answer = await stack.send("POST", path, headers, body)
    event(f"{path} HTTP {answer.status}")
    assert_clean(answer, {200, 400, 404})


async def test_our_signing_is_slacks() -> None:
    body = command_body("stats")
    headers = {name: str(value) for name, value in VALID.headers(body.encode())}
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(body, headers)


async def test_the_slack_app_still_answers_after_the_fuzzing(stack: FuzzStack) -> None:
    await stack.still_serves()
    body = command_body("stats").encode()
    headers = [*VALID.headers(body), ("Content-Type", FORM)]
    answer = await stack.send("POST", "/slack/commands", headers, body)
    assert answer.status == 200 and "P0" in answer.json()["text"]
