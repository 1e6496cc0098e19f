"""What a log line is about, and what it must never show.

- :func:`about` binds the ticket and the conversation a piece of work concerns (context
  variables: every task has its own); :class:`ContextFilter` puts them on each record, so a
  JSON log line carries ``ticket`` and ``conversation`` and an operator can follow one message
  through gateways, workers and the outbox.
- The conversation appears as :func:`conversation_ref`, a short digest of its key: lines of one
  conversation correlate, but a Telegram chat id or WeChat OpenID (which identify a person) is
  never written. Staff see the same reference in Slack.
- :func:`redact` masks what identifies or charges a customer (emails, phone numbers, card-like
  numbers) and credentials in any text; :class:`RedactingFilter` applies it, with the
  configured secrets, to every record a handler writes: the last line of defence should some
  exception text carry a URL with a token or a customer's words.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Final

_ticket: ContextVar[str | None] = ContextVar("peakdesk_ticket", default=None)
_conversation: ContextVar[str | None] = ContextVar("peakdesk_conversation", default=None)


def conversation_ref(conversation_key: str) -> str:
    """A stable, non-reversible 12-character reference to a conversation."""
    return hashlib.sha256(conversation_key.encode()).hexdigest()[:12]


@contextlib.contextmanager
def about(ticket_id: str | None = None, conversation_key: str | None = None) -> Iterator[None]:
    """Log lines written inside are about this ticket and conversation."""
    tokens = (
        _ticket.set(ticket_id),
        _conversation.set(conversation_ref(conversation_key) if conversation_key else None),
    )
    try:
        yield
    finally:
        _conversation.reset(tokens[1])
        _ticket.reset(tokens[0])


# The record attributes ContextFilter sets, in the order the formatters write them.
CONTEXT_FIELDS: Final = ("ticket", "conversation")


class ContextFilter(logging.Filter):
    """Adds ``ticket`` and ``conversation`` (None outside :func:`about`) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.ticket = _ticket.get()
        record.conversation = _conversation.get()
        return True


MASK: Final = "[redacted]"
# Card-like: 13-19 digits, maybe grouped by spaces or dashes, starting 2-6, passing Luhn's check
# (so timestamps and stream ids stay readable).
_CARD: Final = re.compile(r"(?<![\w-])[2-6](?:[ -]?\d){12,18}(?![\w-])")
_PATTERNS: Final = (
    # emails
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    # phone numbers: an international prefix, or the usual groupings of 10+ digits
    re.compile(r"(?<!\w)\+\d[\d ().-]{6,}\d"),
    re.compile(r"(?<![\w-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w-])"),
    # credentials: bearer tokens, API keys, Telegram bot tokens, Slack tokens
    re.compile(r"(?i)bearer\s+\S+"),
    re.compile(r"\bsk-[\w-]{6,}"),
    re.compile(r"(?<!\d)\d{6,12}:[\w-]{30,}"),
    re.compile(r"\bxox[abposr]-[\w-]+"),
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return MASK if luhn_valid(digits) else match.group()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with customer data and credentials (and each of ``secrets``) masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = _CARD.sub(_mask_card, text)
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets and customer data in each record's final message and traceback."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first: a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info), self.secrets)
            record.exc_info = None
        return True
