"""peakdesk on a Redis Cluster whose master of the ``{<prefix>}`` slot (of the first lane with
PEAKDESK_TEST_SHARDS) is killed: the replica takes over, and every message the webhook
acknowledged is answered exactly once.

The cluster is this test's own (tests/redis_cluster.py: 3 masters, a replica each, AOF with
``appendfsync everysec``, a node timeout of 1 s); the service runs in the test's event loop
with one worker, on the cluster client of ``PEAKDESK_REDIS_CLUSTER``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import pytest
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import RedisError

from core.keys import Keys
from core.store import connect_redis
from tests.conftest import skip_or_fail
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, make_settings, message
from tests.redis_cluster import LocalRedisCluster, cluster_tools_missing

pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.slow]

RATE_PER_S = 20  # the steady trickle of new messages
RESEND_AFTER_S = 0.2  # a refused message is sent again after this (a gateway's retry)
# Slower answers than arrivals (8 calls of 0.5 s in flight: 16 a second), so that at the kill
# messages wait in the stream, are in flight in the worker and replies wait in the outbox.
LLM_LATENCY_S = 0.5
LLM_CALLS_IN_FLIGHT = 8


@dataclass
class Trickle:
    """New messages at a steady rate; each is sent until the webhook acknowledges it."""

    service: Service
    acked_at: dict[str, float] = field(default_factory=dict)  # message_id -> monotonic time
    tickets: dict[str, str] = field(default_factory=dict)  # message_id -> ticket_id
    refused: int = 0  # attempts answered non-2xx or not at all

    async def run(self, stop: asyncio.Event) -> None:
        senders: list[asyncio.Task[None]] = []
        n = 0
        while not stop.is_set():
            n += 1
            senders.append(asyncio.create_task(self._send_until_acked(n)))
            await asyncio.sleep(1 / RATE_PER_S)
        await asyncio.gather(*senders)

    async def _send_until_acked(self, n: int) -> None:
        payload = message(n, f"question {n}: what are your opening hours?")
        while True:
            try:
                status, body, _ = await self.service.post("gw", payload)
            except (aiohttp.ClientError, TimeoutError):
                status, body = 0, {}
            if status in (200, 202):
                self.acked_at.setdefault(payload["message_id"], time.monotonic())
                self.tickets[payload["message_id"]] = body["ticket_id"]
                return
            self.refused += 1
            await asyncio.sleep(RESEND_AFTER_S)


async def test_a_killed_master_loses_no_acknowledged_message_and_answers_each_once(
    keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    reason = cluster_tools_missing()
    if reason:
        skip_or_fail(f"no Redis Cluster for the failover test: {reason}")
    fake_llm.latency = LLM_LATENCY_S
    async with LocalRedisCluster() as cluster:
        settings = make_settings(
            keys,
            redis_url=cluster.url,
            peakdesk_redis_cluster=True,
            holysheep_base_url=fake_llm.base_url,
            webhook_callback_url=receiver.url,
            peakdesk_claim_idle_s=1.0,
            peakdesk_max_concurrent=LLM_CALLS_IN_FLIGHT,
        )
        async with Service(settings, None, workers=1) as service:
            trickle = Trickle(service)
            stop = asyncio.Event()
            sending = asyncio.create_task(trickle.run(stop))
            try:
                await asyncio.sleep(1.5)  # a backlog builds up
                before = len(trickle.acked_at)
                unanswered = before - len(_answered(receiver))
                # The master of the first lane's streams: with one lane (the default), of
                # the slot of {<prefix>}, where every key is.
                victim_key = keys.lanes[0].stream(0)
                failover = await asyncio.to_thread(cluster.kill_master_of, victim_key)
                killed_at = failover.killed_at
                await asyncio.sleep(1.5)  # the trickle goes on on the new master
            finally:
                stop.set()
                await sending
            acked = dict(trickle.acked_at)
            await _wait_for_answers(receiver, set(acked), timeout=30)
            drained_at = time.monotonic()
            await asyncio.sleep(1.5)  # time for a wrong second answer to show up
        outcome = _outcome(receiver, set(acked))
        store = connect_redis(cluster.url, cluster=True)
        try:  # an acknowledged message never answered: is its admission still in Redis?
            in_redis = [
                mid for mid in outcome.lost if await store.exists(_seen_key(keys, mid)) == 1
            ]
        finally:
            await store.aclose()
        await asyncio.to_thread(cluster.restart, failover.killed)  # it rejoins as a replica
        rejoined = failover.killed not in await asyncio.to_thread(cluster.masters)

    after_kill = [at - killed_at for at in acked.values() if at > killed_at]
    answers_after_kill = [c.at - killed_at for c in receiver.received if c.at > killed_at]
    print(  # the figures of the run (pytest -s shows them)
        f"\ncluster failover of {failover.killed.address}: replica promoted and cluster ok "
        f"after {failover.seconds:.2f} s; after the kill, the first message acknowledged at "
        f"{_seconds(after_kill)}, the first answer delivered at {_seconds(answers_after_kill)}"
        f", every acknowledged message answered at {drained_at - killed_at:.2f} s; "
        f"acknowledged {len(acked)} ({before} before the kill, {unanswered} of them not "
        f"answered yet), refused attempts {trickle.refused}, answered "
        f"{len(acked) - len(outcome.lost)}, lost {len(outcome.lost)} (of them still admitted "
        f"in Redis: {len(in_redis)}), duplicates {len(outcome.duplicates)}, redelivered "
        f"{outcome.redelivered}"
    )
    assert not outcome.lost, (
        f"acknowledged and never answered: {sorted(outcome.lost)}; admission lost by Redis "
        f"(not on the promoted replica): {sorted(set(outcome.lost) - set(in_redis))}"
    )
    assert not outcome.duplicates, f"answered more than once: {outcome.duplicates}"
    assert len(acked) > before  # messages kept being acknowledged after the failover
    assert rejoined, "the killed master came back as a master"


@dataclass
class Outcome:
    lost: list[str]  # acknowledged, never answered
    duplicates: dict[str, set[str]]  # message_id -> its distinct reply_ids, when more than one
    redelivered: int  # the same reply delivered again (at-least-once delivery; deduped)


def _seen_key(keys: Keys, message_id: str) -> str:
    """The dedupe key of the trickle's message ``m-<n>`` (from user ``u-<n>``)."""
    conversation = "webhook:gw:u-" + message_id.removeprefix("m-")
    return keys.for_conversation(conversation).seen(f"webhook:gw:{message_id}")


def _seconds(times: list[float]) -> str:
    return f"{min(times):.2f} s" if times else "never"


def _answered(receiver: CallbackReceiver) -> dict[str, set[str]]:
    replies: dict[str, set[str]] = defaultdict(set)
    for body in receiver.accepted:
        if body.get("source") != "ack":
            for mid in body.get("message_ids") or [body["message_id"]]:
                replies[mid].add(body["reply_id"])
    return replies


async def _wait_for_answers(receiver: CallbackReceiver, acked: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not acked <= set(_answered(receiver)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


def _outcome(receiver: CallbackReceiver, acked: set[str]) -> Outcome:
    answered = _answered(receiver)
    answers = [b for b in receiver.accepted if b.get("source") != "ack"]
    return Outcome(
        lost=sorted(acked - set(answered)),
        duplicates={mid: ids for mid, ids in answered.items() if len(ids) > 1},
        redelivered=len(answers) - len({b["reply_id"] for b in answers}),
    )


async def test_a_process_connects_while_its_first_seed_node_is_down(
    redis_cluster: LocalRedisCluster,
) -> None:
    # REDIS_URL may name several nodes: one being down (its master killed, the host gone)
    # must not keep a process that starts meanwhile from reaching the cluster.
    dead = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    client = connect_redis(f"{dead},{redis_cluster.url}", cluster=True)
    try:
        assert await client.ping()
        await client.set("{seedtest}:k", "v", ex=10)
        assert await client.get("{seedtest}:k") == "v"
    finally:
        await client.aclose()
    alone = connect_redis(dead, cluster=True)
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises, it cannot connect
        await alone.ping()
    await alone.aclose()


async def test_any_failure_of_the_cluster_client_is_a_redis_error(
    redis_cluster: LocalRedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py 8.1 raised AttributeError from a connection race during a failover; the worker
    # and outbox loops retry on RedisError, so that is what every failure must be.
    client = connect_redis(redis_cluster.url, cluster=True)
    try:
        assert await client.ping()

        async def race(*args: object, **kwargs: object) -> object:
            raise AttributeError("'NoneType' object has no attribute 'writelines'")

        monkeypatch.setattr(RedisCluster, "execute_command", race)
        monkeypatch.setattr(ClusterPipeline, "execute", race)
        with pytest.raises(RedisError, match="AttributeError"):
            await client.get("{errtest}:k")
        with pytest.raises(RedisError, match="AttributeError"):
            async with client.pipeline(transaction=False) as pipe:
                pipe.get("{errtest}:k")
                await pipe.execute()
    finally:
        monkeypatch.undo()
        await client.aclose()
