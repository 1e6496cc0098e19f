"""Logging as ``peakdesk serve`` configures it: at ``PEAKDESK_LOG_LEVEL=DEBUG`` our own debug
lines are written, other libraries' are not (slack_sdk's debug lines quote every request it
sends: a hand-over post carries the customer's name, address and words)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from bots.logs import configure_logging
from core.keys import Keys
from tests.adapters.slack.slack_stack import slack_settings
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import SUPPORT_CHANNEL, FakeSlackAPI
from tests.harness import Service, message

PERSONAL = (
    "I want to speak to a human agent (Alice Johnson, Fairview Gardens 12, alice.j@example.org)"
)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The process's log, configured as at PEAKDESK_LOG_LEVEL=DEBUG. The test's handlers (the
    log scan, pytest's capture) see the same records, first (the production handler redacts
    records in place), and the levels come back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    ours = logging.getLogger("peakdesk").level
    written = io.StringIO()
    configure_logging("text", "DEBUG", stream=written)
    root.handlers[:0] = handlers
    try:
        yield written
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("peakdesk").setLevel(ours)


async def test_a_slack_hand_over_at_debug_level_logs_none_of_the_customers_words(
    debug_log: io.StringIO,
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
) -> None:
    async with FakeSlackAPI() as slack:
        settings = slack_settings(keys, fake_llm, receiver, slack, peakdesk_log_level="DEBUG")
        async with Service(settings, redis) as svc:
            status, _, _ = await svc.post("gw", message(1, PERSONAL))
            assert status == 202
            await slack.wait_for("chat.postMessage", 1)
        assert "Fairview Gardens" in str(slack.posted(SUPPORT_CHANNEL))  # the desk was shown it
    written = debug_log.getvalue()
    assert "Alice Johnson" not in written and "Fairview Gardens" not in written


def test_at_debug_level_our_debug_lines_are_written_and_other_libraries_are_not(
    debug_log: io.StringIO,
) -> None:
    library = logging.getLogger("some_sdk.client")
    library.setLevel(logging.DEBUG)  # a library (or a user) may set its own level
    try:
        logging.getLogger("peakdesk.test").debug("ours at debug")
        library.debug("theirs at debug")
        library.info("theirs at info")
    finally:
        library.setLevel(logging.NOTSET)
    written = debug_log.getvalue()
    assert "ours at debug" in written and "theirs at info" in written
    assert "theirs at debug" not in written
