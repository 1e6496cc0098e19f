"""Shop knowledge as ``peakdesk serve`` runs it: the store API or the demo shop, templates,
and polite degradation while the store is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bots.settings import Settings
from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.store_api import FakeStoreAPI
from tests.harness import Service, message, wired_settings


@pytest.fixture
async def store() -> AsyncIterator[FakeStoreAPI]:
    async with FakeStoreAPI() as api:
        yield api


def store_settings(
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    store: FakeStoreAPI,
    **extra: Any,
) -> Settings:
    """Settings of a service answering from the fake store API, templates first."""
    return wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        store_api_base=store.base_url,
        store_api_token=store.token,
        peakdesk_templates="always",
        **extra,
    )


async def test_templates_answer_from_the_store_api_for_the_linked_customer(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    store: FakeStoreAPI,
) -> None:
    settings = store_settings(keys, fake_llm, receiver, store)
    async with Service(settings, redis) as svc:
        # The "demo" gateway's user alice is customer C001 in the store's identity links.
        await svc.post("demo", message(1, "where is my order 100158?", user_id="alice"))
        await svc.post("demo", message(2, "where is my order 100026?", user_id="alice"))
        replies = {r["message_id"]: r for r in await receiver.wait_for(2)}
    assert replies["m-1"]["source"] == "template"
    assert "100158" in replies["m-1"]["text"] and "793343217053" in replies["m-1"]["text"]
    assert replies["m-2"]["source"] == "llm"  # somebody else's order: no template, no data
    assert "customer" in {c.endpoint for c in store.calls}
    assert fake_llm.calls == 1


async def test_a_store_that_is_down_opens_the_circuit_and_answers_degrade_politely(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    store: FakeStoreAPI,
) -> None:
    # No acknowledgements: with everything failing slowly on a loaded machine, the wait
    # estimate could pass PEAKDESK_FIRST_RESPONSE_S and add an ack to the replies counted.
    settings = store_settings(
        keys, fake_llm, receiver, store, store_api_timeout_s=0.5, peakdesk_first_response_s=0
    )
    store.fail(503, times=1000)
    fake_llm.script(status=503, times=1000)  # and the LLM is down too
    async with Service(settings, redis) as svc:
        for n in range(1, 6):
            text = "how long does delivery take?" if n % 2 else "where is my order 100158?"
            status, _, _ = await svc.post("demo", message(n, text, user_id="alice"))
            assert status == 202
            await receiver.wait_for(n)
        calls_when_open = len(store.calls)
        await svc.post("demo", message(9, "how long does delivery take?", user_id="alice"))
        replies = await receiver.wait_for(6)
    # Five failed lookups (two attempts each) opened the circuit: no more requests went out.
    assert len(store.calls) == calls_when_open <= 10
    for reply in replies:
        assert reply["source"] == "fallback" and reply["ticket_id"] in reply["text"]
