"""Answers shared between customers, end to end: what one customer wrote never reaches another.

The model here repeats everything it is sent (``echo_prompt``), so any word of a customer that
reached a shared prompt shows in the answers of everyone who shares it.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI, echo_prompt
from tests.harness import Service, wired_settings

ABOUT_ALICE = "Hi, this is Alice Johnson from Fairview, my mother Martha is ill, "
# What Alice's question tells about her, beyond what any customer asking it would say.
ALICE_OWN_WORDS = frozenset(("alice", "johnson", "fairview", "mother", "martha", "ill"))


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.mark.parametrize(
    ("alice_asks", "bob_asks", "shared"),
    [
        # The review's case: an address change is about the asker's own order, answered for
        # each customer on their own (with their orders), never shared by intent.
        ("how do I change my shipping address?", "how can I change my delivery address?", False),
        # A question any customer asks alike: one answer, to the intent's canonical question.
        ("how long does delivery take?", "how many days until my parcel arrives?", True),
    ],
)
async def test_a_shared_peak_answer_carries_none_of_another_customers_words(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    alice_asks: str,
    bob_asks: str,
    shared: bool,
) -> None:
    fake_llm.responder = echo_prompt
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_peak_mode="1")
    async with Service(settings, redis) as svc:
        async with asyncio.timeout(5):
            while svc.runtime.peak.level < 1:  # noqa: ASYNC110 - set by the first refresh
                await asyncio.sleep(0.02)
        alice_says = {"message_id": "a-1", "user_id": "alice", "text": ABOUT_ALICE + alice_asks}
        await svc.post("demo", alice_says)
        [alice] = await receiver.wait_for(1)
        await svc.post("other", {"message_id": "b-1", "user_id": "bob", "text": bob_asks})
        [_, bob] = await receiver.wait_for(2)

    assert (alice["user_id"], bob["user_id"]) == ("alice", "bob")
    assert not words(bob["text"]) & ALICE_OWN_WORDS, bob["text"]
    if shared:
        assert bob["source"] == "cache" and fake_llm.calls == 1  # one answer for both
        # Nothing of hers went into the shared prompt at all.
        assert not words(fake_llm.requests[0].body.decode()) & ALICE_OWN_WORDS
    else:
        assert bob["source"] == "llm" and fake_llm.calls == 2  # each their own answer
        assert not words(fake_llm.requests[1].body.decode()) & ALICE_OWN_WORDS
