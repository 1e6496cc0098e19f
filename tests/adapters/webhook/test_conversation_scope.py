"""Whose conversation a webhook message joins, from outside (issue 14, finding 5).

A conversation's state (history, context, caches) is shared between users only when the
gateway says the conversation is a group (``metadata.group``); otherwise it is the sender's
own, whatever ``conversation_id`` the body names.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, wired_settings

ALICE_SECRET = "my tracking number is TRK-ALICE-4711"


def said(user: str, n: int, text: str, **extra: Any) -> dict[str, Any]:
    return {"message_id": f"{user}-{n}", "user_id": user, "text": text, **extra}


def prompt_text(fake_llm: FakeOpenAI, index: int) -> str:
    return json.dumps(fake_llm.requests[index].json["messages"])


async def forget(svc: Service, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, answer, _ = await svc.forget("gw", payload)
    return status, answer


async def test_a_customer_naming_another_customers_conversation_sees_none_of_her_history(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", said("alice", 1, ALICE_SECRET))
        await receiver.wait_for(1)
        # bob names alice's conversation; then claims it is a group; then with a ":" trick.
        await svc.post("gw", said("bob", 1, "what did I say before?", conversation_id="alice"))
        await receiver.wait_for(2)
        group = {"group": True}
        await svc.post(
            "gw", said("bob", 2, "and before that?", conversation_id="alice", metadata=group)
        )
        await receiver.wait_for(3)
        await svc.post("gw", said("bob", 3, "anything else?", conversation_id="gw:alice"))
        await receiver.wait_for(4)
    assert ALICE_SECRET in prompt_text(fake_llm, 0)
    for index in (1, 2, 3):
        assert "TRK-ALICE" not in prompt_text(fake_llm, index), f"bob's prompt {index}"
    assert not any("TRK-ALICE" in c["text"] for c in receiver.accepted[1:])
    # The callbacks still name the conversation as the gateway did.
    assert [c["conversation_id"] for c in receiver.accepted] == [
        "alice",
        "alice",
        "alice",
        "gw:alice",
    ]


async def test_a_customers_conversation_of_her_own_keeps_its_history(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", said("alice", 1, ALICE_SECRET, conversation_id="order-77"))
        await receiver.wait_for(1)
        await svc.post("gw", said("alice", 2, "when will it come?", conversation_id="order-77"))
        await receiver.wait_for(2)
    assert ALICE_SECRET in prompt_text(fake_llm, 1)


async def test_a_group_conversation_shares_its_history_between_members(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    room = {"conversation_id": "room-5", "metadata": {"group": True}}
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", said("carol", 1, "our team order is T-900", **room))
        await receiver.wait_for(1)
        await svc.post("gw", said("dave", 1, "when does our order ship?", **room))
        await receiver.wait_for(2)
        # Not a group for erin: she does not join the room's history.
        await svc.post("gw", said("erin", 1, "which order?", conversation_id="room-5"))
        await receiver.wait_for(3)
    assert "T-900" in prompt_text(fake_llm, 1)
    assert "T-900" not in prompt_text(fake_llm, 2)


async def test_ids_with_control_characters_are_refused(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        answers = [
            await svc.post("gw", said("bob", 1, "hi", conversation_id="alice\x1fg")),
            await svc.post("gw", {**said("bob", 2, "hi"), "user_id": "bob\x1f"}),
            await svc.post("gw", said("bob", 3, "hi", metadata={"group": "yes"})),
        ]
        forgotten = await forget(svc, {"user_id": "bob", "conversation_id": "a\x1fb"})
    assert [(status, body.get("field")) for status, body, _ in answers] == [
        (400, "conversation_id"),
        (400, "user_id"),
        (400, "metadata.group"),
    ]
    assert forgotten[0] == 400 and forgotten[1]["field"] == "conversation_id"
    assert fake_llm.calls == 0


async def test_forget_names_the_users_conversation_or_the_group(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    room = {"conversation_id": "room-5", "metadata": {"group": True}}
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", said("alice", 1, "alice alone"))
        await svc.post("gw", said("bob", 1, "bob in the shop", conversation_id="shop"))
        await svc.post("gw", said("carol", 1, "carol in the room", **room))
        await receiver.wait_for(3)

        # bob's conversation "shop" is his: naming only the conversation finds user "shop".
        assert (await forget(svc, {"conversation_id": "shop"}))[1]["deleted"] == 0
        bob = await forget(svc, {"user_id": "bob", "conversation_id": "shop"})
        # The room is forgotten as a group only.
        not_group = await forget(svc, {"conversation_id": "room-5", "user_id": "carol"})
        group = await forget(svc, {"conversation_id": "room-5", "group": True})
        alice = await forget(svc, {"user_id": "alice"})

        await svc.post("gw", said("bob", 2, "what did I ask?", conversation_id="shop"))
        await svc.post("gw", said("dave", 1, "what was said here?", **room))
        await svc.post("gw", said("alice", 2, "what did I tell you?"))
        await receiver.wait_for(6)
    assert bob[0] == 200 and bob[1]["deleted"] >= 1
    assert not_group[1]["deleted"] == 0
    assert group[1]["deleted"] >= 1
    assert alice[1]["deleted"] >= 1
    later = " ".join(prompt_text(fake_llm, i) for i in range(3, 6))
    assert not any(text in later for text in ("alice alone", "bob in the", "carol in the"))
