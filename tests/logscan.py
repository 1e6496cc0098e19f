"""Finds what must never be in a log line: configured secrets and customer data.

Deliberately independent of :func:`core.logcontext.redact` (its own, broader patterns), so a
gap in the production redaction is not mirrored here. Used on every log record of the test
suite (tests/conftest.py) and on the JSON logs of the fault suite's processes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from tests.fakes import slack_api, store_api, telegram_api, wechat_api

# Every credential the suite configures somewhere (fixtures, fakes, wiring tests).
SECRETS: Final = (
    "test-webhook-secret",  # tests.conftest.WEBHOOK_SECRET (conftest imports this module)
    "sk-test-key",
    "sk-test-secret-key-123",
    telegram_api.TOKEN,
    telegram_api.TOKEN.split(":", 1)[1],
    "tg-test-secret_1",
    "tg-webhook-secret_0123456789",
    slack_api.SIGNING_SECRET,
    slack_api.BOT_TOKEN,
    slack_api.VERIFICATION_TOKEN,
    store_api.TOKEN,
    wechat_api.APP_SECRET,
    "peakdesk-token",
    "shop-a-secret-5f0c2e91",  # tests/adapters/webhook/test_signature_scope.py (WEBHOOK_SECRETS)
    "shop-b-secret-a37d4b08",
)

_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]*[a-z]", re.IGNORECASE)
# The shop's own public addresses are not customer data.
_SHOP_ADDRESSES: Final = frozenset({"support@example.com"})
_PHONE: Final = re.compile(r"\+\d{1,3}[ -]?\(?\d{2,4}\)?(?:[ -]?\d{2,4}){2,3}")
_DIGIT_RUN: Final = re.compile(r"\d(?:[ -]?\d){12,18}")


def _luhn(digits: str) -> bool:
    checksum = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char) * (1 + i % 2)
        checksum += n // 10 + n % 10
    return checksum % 10 == 0


def leaks(text: str, secrets: Iterable[str] = SECRETS) -> list[str]:
    """What in ``text`` is a secret, an email, a phone number or a card-like number."""
    found = [f"secret {s[:3]}…" for s in secrets if s and s in text]
    found += [f"email {m}" for m in _EMAIL.findall(text) if m.lower() not in _SHOP_ADDRESSES]
    found += [f"phone {m}" for m in _PHONE.findall(text)]
    for run in _DIGIT_RUN.findall(text):
        digits = re.sub(r"\D", "", run)
        if digits[0] in "23456" and _luhn(digits):
            found.append(f"card-like {run}")
    return found
