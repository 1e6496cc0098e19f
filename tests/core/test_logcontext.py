"""Log lines: about which ticket and conversation, and never a secret or a customer's data."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from bots.logs import configure_logging
from core.logcontext import about, conversation_ref, redact
from tests.logscan import leaks

PRIVATE = (
    "I am jane.doe@example.org, call +1 555 123 4567 or (555) 987-6543, "
    "card 4111 1111 1111 1111 / 5500-0000-0000-0004"
)


def test_redact_masks_emails_phones_card_numbers_and_credentials() -> None:
    text = redact(
        PRIVATE + " key sk-live-abcdef123 Bearer abc.def token 123456789:" + "A" * 35 + " xoxb-1-2",
        secrets=["hunter22"],
    )
    assert leaks(text) == []
    for gone in ("jane.doe", "555", "4111", "5500", "sk-live", "abc.def", "AAAA", "xoxb"):
        assert gone not in text
    assert redact("my pin is hunter22", ["hunter22"]) == "my pin is [redacted]"


def test_redact_keeps_what_operators_need() -> None:
    kept = (
        "ticket T6a1f00c0ffee0001 stream 1795784937123-0 order A1001 at 2026-11-27 12:00, 3 items"
    )
    assert redact(kept) == kept
    assert redact("not a card: 4111 1111 1111 1112") == "not a card: 4111 1111 1111 1112"  # Luhn


def test_scanner_finds_each_kind_of_leak() -> None:
    assert leaks("nothing here, ticket T1 at 1795784937123") == []
    assert [kind.split()[0] for kind in leaks(PRIVATE)] == [
        "email",
        "phone",
        "card-like",
        "card-like",
    ]
    assert leaks("token test-webhook-secret") == ["secret tes…"]


async def test_ticket_and_conversation_are_bound_per_task() -> None:
    seen: dict[str, tuple[str | None, str | None]] = {}

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen[record.getMessage()] = (record.ticket, record.conversation)  # type: ignore[attr-defined]

    log = logging.getLogger("peakdesk.test.context")
    saved = logging.getLogger().handlers[:]
    handler = configure_logging("json", "INFO", stream=io.StringIO())
    capture = Capture()
    for f in handler.filters:
        capture.addFilter(f)
    log.addHandler(capture)

    async def work(n: int) -> None:
        with about(f"T{n}", f"telegram:bot:{n}"):
            await asyncio.sleep(0)
            log.info("working %d", n)
        log.info("after %d", n)

    try:
        await asyncio.gather(work(1), work(2))
    finally:
        log.removeHandler(capture)
        logging.getLogger().handlers[:] = saved
    assert seen["working 1"] == ("T1", conversation_ref("telegram:bot:1"))
    assert seen["working 2"] == ("T2", conversation_ref("telegram:bot:2"))
    assert seen["after 1"] == (None, None)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configured_handler_writes_ids_and_redacts_every_line(fmt: str) -> None:
    out = io.StringIO()
    # A logger of its own that does not propagate: the suite's leak scan sees raw records,
    # and this test logs customer data on purpose.
    log = logging.getLogger("leaky.test")
    log.propagate = False
    saved = logging.getLogger().handlers[:]
    handler = configure_logging(fmt, "INFO", secrets=["s3cret-value"], stream=out)
    log.addHandler(handler)
    try:
        with about("T42", "webhook:gw:u-7"):
            log.warning("customer wrote %s with s3cret-value", PRIVATE)
            try:
                raise ValueError("https://api.example/bot123456789:" + "B" * 35 + "/send")
            except ValueError:
                log.exception("send failed")
    finally:
        log.removeHandler(handler)
        logging.getLogger().handlers[:] = saved
    written = out.getvalue()
    assert leaks(written, ["s3cret-value", "B" * 35]) == []
    assert "u-7" not in written  # the conversation appears as its reference only
    ref = conversation_ref("webhook:gw:u-7")
    if fmt == "json":
        first, second = (json.loads(line) for line in written.strip().splitlines()[:2])
        assert first["ticket"] == "T42" and first["conversation"] == ref
        assert first["msg"].startswith("customer wrote I am [redacted]")
        assert second["msg"] == "send failed" and "ValueError" in second["exc"]
    else:
        assert f"[ticket=T42 conversation={ref}]" in written.splitlines()[0]
        assert "Traceback" in written and "ValueError" in written


def test_aiohttp_parse_errors_become_one_line_without_the_raw_bytes() -> None:
    out = io.StringIO()
    saved = logging.getLogger().handlers[:]
    server = logging.getLogger("aiohttp.server")
    server.propagate = False  # the suite's scan sees raw records: this one quotes a body
    handler = configure_logging("json", "INFO", stream=out)
    server.addHandler(handler)
    try:
        try:
            raise ValueError('Data after `Connection: close`: b\'{"text": "my secret order"}\'')
        except ValueError:
            server.exception("Error handling request")
    finally:
        server.removeHandler(handler)
        server.propagate = True
        logging.getLogger().handlers[:] = saved
    [line] = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and "exc" not in entry
    assert entry["msg"] == "malformed request refused (ValueError)"
