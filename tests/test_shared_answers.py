"""Answers shared between customers, end to end: what one customer wrote never reaches another.

The model here repeats everything it is sent (``echo_prompt``), so any word of a customer that
reached a shared prompt shows in the answers of everyone who shares it.
"""

from __future__ import annotations

import asyncio
import re

from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI, echo_prompt
from tests.harness import Service, wired_settings

ALICE = (
    "Hi, this is Alice Johnson, I live on Baker Street in Fairview and my mother is ill, "
    "how do I change my shipping address?"
)
# What Alice's question tells about her, beyond what any customer asking it would say.
ALICE_OWN_WORDS = frozenset(
    ("alice", "johnson", "live", "baker", "street", "fairview", "mother", "ill")
)
BOB = "how can I change my delivery address?"


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


async def test_a_shared_peak_answer_carries_none_of_another_customers_words(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    fake_llm.responder = echo_prompt
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_peak_mode="1")
    async with Service(settings, redis) as svc:
        async with asyncio.timeout(5):
            while svc.runtime.peak.level < 1:  # noqa: ASYNC110 - set by the first refresh
                await asyncio.sleep(0.02)
        await svc.post("demo", {"message_id": "a-1", "user_id": "alice", "text": ALICE})
        [alice] = await receiver.wait_for(1)
        await svc.post("other", {"message_id": "b-1", "user_id": "bob", "text": BOB})
        [_, bob] = await receiver.wait_for(2)

    assert (alice["user_id"], bob["user_id"]) == ("alice", "bob")
    assert bob["source"] == "cache" and fake_llm.calls == 1  # one answer for both
    assert not words(bob["text"]) & ALICE_OWN_WORDS, bob["text"]
    # Nothing of hers went into the shared prompt at all.
    assert not words(fake_llm.requests[0].body.decode()) & ALICE_OWN_WORDS
