"""Hand-over records: shared through Redis, each change made and announced once."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis

from core.handover import (
    OWNED,
    REQUESTED,
    RESOLVED,
    RETURNED,
    Escalation,
    HandoverDesk,
    handover_notice,
)
from core.keys import Keys
from core.models import DeskEvent, DeskEventKind, Reply, ReplySource
from core.queue import PriorityQueue
from tests.harness import inbound

CONVERSATION = "webhook:gw:u1"


async def outbox(redis: Redis, keys: Keys) -> list[DeskEvent | Reply]:
    entries: Any = await redis.xrange(keys.outbox)
    return [
        DeskEvent.from_json(f["d"]) if "d" in f else Reply.from_json(f["r"]) for _, f in entries
    ]


async def escalate(desk: HandoverDesk, ticket: str = "T1", n: int = 1) -> Escalation:
    return await desk.escalate(
        inbound(n, "I want to speak to a person"),
        ticket_id=ticket,
        priority=1,
        reason="customer asked for a person",
        history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    )


async def test_an_escalation_is_recorded_and_announced_once(redis: Redis, keys: Keys) -> None:
    desk = HandoverDesk(redis, keys, ttl_s=3600)
    assert await escalate(desk) is Escalation.POSTED
    assert await escalate(desk) is Escalation.ALREADY  # the same message processed again
    assert await escalate(HandoverDesk(redis, keys), ticket="T2") is Escalation.ALREADY  # open
    handover = await HandoverDesk(redis, keys).get(CONVERSATION)
    assert handover is not None and handover.status == REQUESTED and handover.ticket_id == "T1"
    assert handover.reply_to == {"callback_url": "http://127.0.0.1:9/cb"}
    assert [t["content"] for t in handover.transcript] == [
        "hi",
        "hello",
        "I want to speak to a person",
    ]
    [event] = await outbox(redis, keys)
    assert isinstance(event, DeskEvent) and event.kind is DeskEventKind.ESCALATED
    assert await desk.open_count() == 1
    assert await desk.find("T1") == CONVERSATION
    assert 0 < await redis.ttl(keys.handover(CONVERSATION)) <= 3600


async def test_an_unstaffed_desk_never_hands_over(redis: Redis, keys: Keys) -> None:
    desk = HandoverDesk(redis, keys, staffed=False)
    assert await escalate(desk) is Escalation.UNSTAFFED
    assert await desk.get(CONVERSATION) is None and await outbox(redis, keys) == []


async def test_messages_of_a_handed_over_conversation_are_held_once(
    redis: Redis, keys: Keys
) -> None:
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    desk = HandoverDesk(redis, keys)
    first = await queue.admit(inbound(1, "hello?"), 2)
    assert await escalate(desk, ticket=first.ticket_id)
    later = await queue.admit(replace(inbound(1, "anyone there?"), message_id="m-later"), 2)
    entries = await queue.read("w", 10)
    by_ticket = {e.ticket_id: e for e in entries}
    # The message that escalated is answered as usual (a retry after a crash, say).
    assert await desk.hold(by_ticket[first.ticket_id]) is False
    held = by_ticket[later.ticket_id]
    assert await desk.hold(held) is True
    assert await desk.hold(held) is True  # processed twice: still one desk event
    events = [e for e in await outbox(redis, keys) if isinstance(e, DeskEvent)]
    assert [e.kind for e in events] == [DeskEventKind.ESCALATED, DeskEventKind.CUSTOMER]
    assert events[1].text == "anyone there?"
    handover = await desk.get(CONVERSATION)
    assert handover is not None and handover.message_id == "m-later"
    pending: Any = await redis.xpending(keys.stream(2), "workers")
    assert pending["pending"] == 1  # the held one is acked; the first awaits its answer


async def test_take_over_release_and_resolve_change_the_owner_for_everyone(
    redis: Redis, keys: Keys
) -> None:
    desk = HandoverDesk(redis, keys)
    await escalate(desk)
    assert (await desk.change(CONVERSATION, "take", "U1")).outcome == "changed"
    assert (await desk.change(CONVERSATION, "take", "U1")).outcome == "unchanged"
    other = HandoverDesk(redis, keys)
    taken = await other.change(CONVERSATION, "take", "U2")
    assert (taken.outcome, taken.previous_owner) == ("changed", "U1")
    handover = await other.get(CONVERSATION)
    assert handover is not None and (handover.status, handover.owner) == (OWNED, "U2")
    assert (await desk.change(CONVERSATION, "release", "U2")).outcome == "changed"
    handover = await desk.get(CONVERSATION)
    assert handover is not None and handover.status == RETURNED and not handover.is_open
    assert await desk.open_count() == 0
    assert (await desk.change(CONVERSATION, "resolve", "U2")).outcome == "unchanged"
    assert (await desk.change("webhook:gw:nobody", "take", "U1")).outcome == "unknown"
    statuses = [
        e.status
        for e in await outbox(redis, keys)
        if isinstance(e, DeskEvent) and e.kind is DeskEventKind.STATUS
    ]
    assert statuses == [OWNED, OWNED, RETURNED]
    assert await desk.estimated_wait() is not None  # one pickup measured


async def test_a_staff_reply_goes_out_once_and_takes_an_unowned_conversation(
    redis: Redis, keys: Keys
) -> None:
    desk = HandoverDesk(redis, keys)
    await escalate(desk)
    sent = await desk.staff_reply(CONVERSATION, "U7", "Hi, Anna here. Let me check.", "H1")
    again = await desk.staff_reply(CONVERSATION, "U7", "Hi, Anna here. Let me check.", "H1")
    assert (sent.outcome, again.outcome) == ("changed", "duplicate")
    handover = await desk.get(CONVERSATION)
    assert handover is not None and (handover.status, handover.owner) == (OWNED, "U7")
    replies = [e for e in await outbox(redis, keys) if isinstance(e, Reply)]
    assert len(replies) == 1
    [reply] = replies
    assert reply.source is ReplySource.HUMAN and reply.reply_id == "H1"
    assert (reply.ticket_id, reply.message_id, reply.user_id) == ("T1", "m1", "u1")
    assert reply.delivery_id == "H1"
    # Resolved, then written to again: the thread takes the conversation back.
    await desk.change(CONVERSATION, "resolve", "U7")
    back = await desk.staff_reply(CONVERSATION, "U8", "One more thing", "H2")
    handover = await desk.get(CONVERSATION)
    assert back.outcome == "changed" and handover is not None and handover.owner == "U8"
    assert (await desk.staff_reply("webhook:gw:nobody", "U7", "hi", "H3")).outcome == "unknown"


async def test_a_resolved_conversation_can_be_escalated_again(redis: Redis, keys: Keys) -> None:
    desk = HandoverDesk(redis, keys, escalate_interval_s=0)
    await escalate(desk, ticket="T1")
    await desk.set_thread(CONVERSATION, "C1:100.1")
    await desk.change(CONVERSATION, "resolve", "U1")
    handover = await desk.get(CONVERSATION)
    assert handover is not None and handover.status == RESOLVED
    assert await escalate(desk, ticket="T9") is Escalation.POSTED
    handover = await desk.get(CONVERSATION)
    assert handover is not None and handover.ticket_id == "T9" and handover.thread == ""
    assert await desk.find_by_thread("C1:100.1") == CONVERSATION


async def test_escalated_again_within_the_interval_it_reopens_in_its_thread(
    redis: Redis, keys: Keys
) -> None:
    desk = HandoverDesk(redis, keys, escalate_interval_s=60)
    await escalate(desk, ticket="T1")
    await desk.set_thread(CONVERSATION, "C1:100.1")
    await desk.change(CONVERSATION, "resolve", "U1")
    assert await escalate(desk, ticket="T2") is Escalation.REOPENED
    assert await escalate(desk, ticket="T2") is Escalation.ALREADY  # processed again
    handover = await desk.get(CONVERSATION)
    assert handover is not None and (handover.status, handover.ticket_id) == (REQUESTED, "T2")
    assert handover.thread == "C1:100.1" and await desk.open_count() == 1
    events = [e for e in await outbox(redis, keys) if isinstance(e, DeskEvent)]
    assert [e.kind for e in events] == [
        DeskEventKind.ESCALATED,
        DeskEventKind.STATUS,  # resolved
        DeskEventKind.STATUS,  # requested again: a note in the thread, no new post
    ]
    assert events[-1].status == REQUESTED
    # Forgotten, then escalated within the interval: nothing to reopen, nothing posted (and
    # the customer is not told people answer).
    await desk.forget(CONVERSATION)
    assert await escalate(desk, ticket="T3") is Escalation.DEFERRED
    assert await desk.get(CONVERSATION) is None
    # Staff may always open one.
    message = inbound(4, "")
    opened = await desk.escalate(
        message, ticket_id="T4", priority=2, reason="opened by staff", by_staff=True
    )
    assert opened is Escalation.POSTED


async def test_after_the_interval_an_escalation_is_posted_anew(redis: Redis, keys: Keys) -> None:
    desk = HandoverDesk(redis, keys, escalate_interval_s=60)
    await escalate(desk, ticket="T1")
    await desk.change(CONVERSATION, "resolve", "U1")
    await redis.delete(keys.escalated(CONVERSATION))  # as its TTL would, after 60 s
    assert await escalate(desk, ticket="T2") is Escalation.POSTED
    events = [e for e in await outbox(redis, keys) if isinstance(e, DeskEvent)]
    assert [e.kind for e in events][-1] is DeskEventKind.ESCALATED


async def test_forgetting_deletes_the_record_its_indexes_and_tells_the_desk(
    redis: Redis, keys: Keys
) -> None:
    desk = HandoverDesk(redis, keys)
    await escalate(desk, ticket="T1")
    await desk.set_thread(CONVERSATION, "C1:100.1")
    assert await desk.forget(CONVERSATION) == 3  # the record, its ticket and thread indexes
    assert await desk.get(CONVERSATION) is None and await desk.find("T1") is None
    assert await desk.find_by_thread("C1:100.1") is None
    assert await desk.open_count() == 0
    event = (await outbox(redis, keys))[-1]
    assert isinstance(event, DeskEvent) and event.kind is DeskEventKind.FORGOTTEN
    assert (event.thread, event.ticket_id) == ("C1:100.1", "T1")
    assert await desk.forget(CONVERSATION) == 0


async def test_the_open_count_drops_hand_overs_whose_record_expired(
    redis: Redis, keys: Keys
) -> None:
    desk = HandoverDesk(redis, keys)
    await escalate(desk, ticket="T1")
    other = dataclasses.replace(inbound(2, "a person please"), user_id="u2", conversation_id="u2")
    await desk.escalate(other, ticket_id="T2", priority=1, reason="asked")
    assert await desk.open_count() == 2
    await redis.delete(keys.handover(CONVERSATION))  # as its TTL would
    assert await desk.open_count() == 1
    lane = keys.for_conversation(CONVERSATION)
    assert await redis.zscore(lane.handovers_open, CONVERSATION) is None


async def test_a_group_hand_over_answers_in_the_groups_conversation(
    redis: Redis, keys: Keys
) -> None:
    desk = HandoverDesk(redis, keys)
    message = dataclasses.replace(
        inbound(1, "a person please"), conversation_id="room", user_id="carol", group=True
    )
    await desk.escalate(message, ticket_id="T1", priority=1, reason="asked")
    await desk.staff_reply(message.conversation_key, "U7", "Hello room", "H1")
    [reply] = [e for e in await outbox(redis, keys) if isinstance(e, Reply)]
    assert reply.group and reply.conversation_key == message.conversation_key


async def test_failures_are_counted_per_conversation(redis: Redis, keys: Keys) -> None:
    desk = HandoverDesk(redis, keys, failures_ttl_s=60)
    assert [await desk.count_failure("a") for _ in range(3)] == [1, 2, 3]
    assert await desk.count_failure("b") == 1
    assert 0 < await redis.ttl(keys.failures("a")) <= 60


def test_the_notice_names_the_ticket_and_the_wait_when_known() -> None:
    unknown = handover_notice("T42", None, "en")
    assert "T42" in unknown and "wait" not in unknown
    assert "about 3 min" in handover_notice("T42", 170, "en")
    chinese = handover_notice("T42", 60, "zh-CN")
    assert "工单号 T42" in chinese and "1 分钟" in chinese
