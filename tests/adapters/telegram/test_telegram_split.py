"""Splitting replies to Telegram's 4096-character limit, at the best boundary available."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.telegram.split import MAX_MESSAGE_LENGTH, split_reply, utf16_len


def squash(text: str) -> str:
    return "".join(text.split())


def test_a_short_reply_is_one_part_and_a_blank_one_none() -> None:
    assert split_reply("  Your order ships today.\n") == ["Your order ships today."]
    assert split_reply(" \n\t ") == []


def test_a_5000_character_reply_splits_at_the_paragraph_break() -> None:
    first = "Order status. " * 200  # 2800 characters
    second = "Refund policy. " * 146  # 2190 characters
    parts = split_reply(f"{first.strip()}\n\n{second.strip()}")
    assert parts == [first.strip(), second.strip()]


def test_without_paragraphs_it_splits_after_a_sentence() -> None:
    text = "This is one sentence of a long answer. " * 120  # 4680 characters
    parts = split_reply(text)
    assert len(parts) == 2
    assert parts[0].endswith("long answer.") and parts[1].startswith("This is one")
    assert squash("".join(parts)) == squash(text)


def test_without_sentences_it_splits_between_words() -> None:
    text = " ".join(["word"] * 1500)  # 7499 characters, no punctuation
    parts = split_reply(text)
    assert len(parts) == 2
    assert all(p.startswith("word") and p.endswith("word") for p in parts)
    assert squash("".join(parts)) == squash(text)


def test_one_endless_word_is_cut_at_the_limit() -> None:
    parts = split_reply("x" * 9000)
    assert [len(p) for p in parts] == [4096, 4096, 808]


def test_lengths_count_utf16_units_as_telegram_does() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units
    parts = split_reply(text)
    assert [utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_chinese_text_splits_after_a_full_stop() -> None:
    text = "您的订单已经发货，预计三天内送达。" * 300  # 5100 characters, no spaces
    parts = split_reply(text)
    assert len(parts) == 2 and parts[0].endswith("。")
    assert "".join(parts) == text


@given(st.text(alphabet=st.sampled_from("ab .\n😀中"), max_size=400))
def test_parts_are_never_empty_or_too_long_and_keep_every_character(text: str) -> None:
    parts = split_reply(text, limit=50)
    assert all(p and p == p.strip() and utf16_len(p) <= 50 for p in parts)
    assert squash("".join(parts)) == squash(text)


def test_the_default_limit_is_telegrams() -> None:
    assert MAX_MESSAGE_LENGTH == 4096
