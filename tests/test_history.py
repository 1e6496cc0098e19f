"""``PEAKDESK_HISTORY_TURNS``: how much of a conversation the model is sent, end to end."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, wired_settings

FIRST = "my blender makes a strange humming noise since tuesday"
SECOND = "and the lid of the blender does not close properly either"


def said(request_json: dict[str, Any]) -> str:
    """Everything a chat-completions request sent the model, in one string."""
    return " ".join(str(m.get("content") or "") for m in request_json["messages"])


async def two_turns(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver, turns: int
) -> str:
    """One conversation, two messages answered one after the other; what the model was sent
    for the second."""
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_history_turns=turns)
    async with Service(settings, redis) as svc:
        for n, text in enumerate((FIRST, SECOND), 1):
            status, _, _ = await svc.post(
                "gw", {"message_id": f"m-{n}", "user_id": "u-1", "text": text}
            )
            assert status == 202
            await receiver.wait_for(n)
    second = [r for r in fake_llm.requests if SECOND in said(r.json)]
    assert second, "the second message never reached the model"
    return said(second[-1].json)


async def test_history_turns_0_sends_the_model_no_history(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    sent = await two_turns(redis, keys, fake_llm, receiver, turns=0)
    assert FIRST not in sent
    assert not await redis.exists(keys.history("webhook:gw:u-1"))


async def test_history_turns_1_sends_the_model_the_previous_turn(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    sent = await two_turns(redis, keys, fake_llm, receiver, turns=1)
    assert FIRST in sent
