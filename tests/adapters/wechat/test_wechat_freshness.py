"""The time window and the nonce memory of WeChat's signed requests, on every store."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from adapters.wechat.crypto import WeChatSignatureError, signature
from adapters.wechat.freshness import WINDOW_S, PushFreshness
from core.keys import Keys

NOW = 1_764_201_600


def at_now(redis: Redis, keys: Keys) -> PushFreshness:
    return PushFreshness(redis, keys, clock=lambda: NOW + 0.5)


@pytest.mark.parametrize("offset", [0, WINDOW_S, -WINDOW_S])
async def test_a_timestamp_within_300_s_either_way_is_fresh(
    redis: Redis, keys: Keys, offset: int
) -> None:
    at_now(redis, keys).check_time(str(NOW + offset))


@pytest.mark.parametrize(
    "timestamp",
    [
        str(NOW + WINDOW_S + 1),
        str(NOW - WINDOW_S - 1),
        "1",
        "0",
        "",
        f"+{NOW}",
        f" {NOW}",
        f"{NOW}.0",
        "١٧٦٤٢٠١٦٠٠",  # digits, but not ASCII ones
        "9" * 40,
    ],
)
async def test_a_timestamp_outside_the_window_or_not_a_unix_time_is_refused(
    redis: Redis, keys: Keys, timestamp: str
) -> None:
    with pytest.raises(WeChatSignatureError, match="timestamp"):
        at_now(redis, keys).check_time(timestamp)


async def test_a_signature_is_taken_once_and_again_after_a_release(
    redis: Redis, keys: Keys
) -> None:
    freshness = at_now(redis, keys)
    signed = signature("token", str(NOW), "nonce-1")
    await freshness.claim(signed, str(NOW))
    with pytest.raises(WeChatSignatureError, match="nonce already used"):
        await freshness.claim(signed, str(NOW))
    await freshness.release(signed)
    await freshness.claim(signed, str(NOW))
    key = keys.wechat_nonce(signed)
    assert 0 < await redis.ttl(key) <= 2 * WINDOW_S  # remembered as long as it can be fresh
    assert key.startswith(keys.tag)  # what every process shares


async def test_another_split_of_the_signed_characters_is_the_same_signature() -> None:
    """Why the memory is keyed by the signature: WeChat signs the sorted, concatenated parts,
    so moving characters between the timestamp and the nonce keeps the signature."""
    token, timestamp, nonce = "token", str(NOW), "17642016"
    original = signature(token, timestamp, nonce)
    # sorted: "17642016" < "1764201600": nonce + timestamp = "176420161764201600"
    assert signature(token, "1764201600", "17642016") == original
    assert signature(token, "61764201600", "1764201") == original  # moved one digit
