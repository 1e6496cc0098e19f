"""A worker process killed (SIGKILL) in the middle of a message: another worker answers it,
and the customer gets exactly one reply. Runs on the real Redis server and on a Redis Cluster
(processes share it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from bots.runtime import Runtime
from core.keys import Keys
from tests.conftest import SharedStore
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import WEBHOOK_SECRET, Service, make_settings, message

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_killed_worker_message_is_answered_once_by_another_worker(
    keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver, shared_store: SharedStore
) -> None:
    redis = shared_store.client
    fake_llm.script(delay=60)  # the first worker hangs in the LLM call until it is killed
    settings = make_settings(
        keys,
        redis_url=shared_store.url,
        peakdesk_redis_cluster=shared_store.cluster,
        holysheep_base_url=fake_llm.base_url,
        webhook_callback_url=receiver.url,
        peakdesk_claim_idle_s=1.0,
    )
    env = {
        **os.environ,
        **shared_store.env,
        "PEAKDESK_REDIS_PREFIX": keys.prefix,
        "HOLYSHEEP_API_KEY": "sk-test-key",
        "HOLYSHEEP_BASE_URL": fake_llm.base_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PEAKDESK_CLAIM_IDLE_S": "1",
    }
    async with Service(settings, redis, workers=0) as gateway:
        status, body, _ = await gateway.post("gw", message(1, "where is my parcel?"))
        assert status == 202
        doomed = subprocess.Popen(  # noqa: ASYNC220 - started once, killed below
            [sys.executable, "-m", "bots.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(20):
                while fake_llm.calls == 0:  # noqa: ASYNC110 - another process's progress
                    await asyncio.sleep(0.05)
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(5)
        assert receiver.received == []

        rescuer = Runtime(settings, workers=1, redis=redis)
        await rescuer.start()
        try:
            [callback] = await receiver.wait_for(1, timeout=20)
            await asyncio.sleep(1.5)  # time for a wrong second reply to show up
        finally:
            await rescuer.stop()
    assert callback["ticket_id"] == body["ticket_id"] and callback["source"] == "llm"
    assert len(receiver.received) == 1
    assert fake_llm.calls == 2
