"""Reply text → Telegram messages: ``sendMessage`` takes 1-4096 characters.

Telegram counts UTF-16 code units (an emoji outside the BMP counts two), so lengths here do
too. A longer reply is cut at the last paragraph break that keeps a part at least half full,
else at the last sentence end, else at the last space, else (one endless word) at the limit.
"""

from __future__ import annotations

import re
from typing import Final

MAX_MESSAGE_LENGTH: Final = 4096

_PARAGRAPH: Final = re.compile(r"\n\s*\n")
_SENTENCE: Final = re.compile(r"(?<=[.!?…。！？])[\"')\]»”’]*\s+|(?<=[。！？])")
_SPACE: Final = re.compile(r"\s+")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def split_reply(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """The parts to send, in order; [] when ``text`` is blank. Every part is 1-``limit`` long."""
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        window = _prefix_within(rest, limit)
        cut = _cut_point(window)
        part, rest = window[:cut].rstrip(), rest[cut:].lstrip()
        if part:
            parts.append(part)
    return parts


def _prefix_within(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` UTF-16 units long."""
    window = text[:limit]
    if utf16_len(window) <= limit:
        return window
    # Astral characters count two: cut the UTF-16 form, dropping a half surrogate pair.
    return window.encode("utf-16-le")[: 2 * limit].decode("utf-16-le", errors="ignore")


def _cut_point(window: str) -> int:
    """Where to end this part: after the last good boundary in the second half of ``window``."""
    half = len(window) // 2
    for boundary in (_PARAGRAPH, _SENTENCE, _SPACE):
        matches = list(boundary.finditer(window, half))
        if matches:
            return matches[-1].end()
    return len(window)
