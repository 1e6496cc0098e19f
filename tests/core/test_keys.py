"""The key layout: one hash tag with one lane; with several, a conversation's keys share its
lane's slot (what Redis Cluster needs for one script), and lanes spread conversations."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from core.keys import Keys


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def conversation_keys(keys: Keys, conversation: str, ticket: str) -> list[str]:
    """Every key one admission, turn or finish of this conversation touches together."""
    lane = keys.for_conversation(conversation)
    return [
        *lane.streams,
        lane.outbox,
        lane.dead_letters,
        lane.seen("webhook:gw:m1"),
        lane.flood("webhook:gw:u1"),
        lane.flood_notice("webhook:gw:u1"),
        lane.stats_day("20261127"),
        lane.handovers_open,
        lane.delivery_claim(ticket),
        keys.reply(ticket),
        keys.held(ticket),
        keys.handover_ticket(ticket),
        keys.burst(conversation),
        keys.turn_lock(conversation),
        keys.acked(conversation),
        keys.history(conversation),
        keys.context(conversation),
        keys.handover(conversation),
        lane.handover_prefix + conversation,
        keys.escalated(conversation),
    ]


def test_one_lane_keeps_every_key_under_the_prefix_tag() -> None:
    keys = Keys("pd")
    assert keys.lanes == (keys,) and keys.for_conversation("any") is keys
    assert keys.ticket_suffix("any") == ""
    assert keys.for_ticket("T1-3") is keys
    assert keys.stream(0) == "{pd}:q:0" and keys.outbox == "{pd}:out"
    assert keys.history("webhook:gw:u1") == "{pd}:hist:webhook:gw:u1"
    assert (
        keys.reply("T1") == "{pd}:reply:T1" and keys.stats_day("20261127") == "{pd}:stats:20261127"
    )
    assert {slot(k) for k in conversation_keys(keys, "webhook:gw:u1", "T1")} == {slot("{pd}")}


def test_a_conversations_keys_share_its_lanes_slot() -> None:
    keys = Keys("pd", shards=8)
    for n in range(50):
        conversation = f"telegram:1:{n}"
        ticket = "T6B0983" + keys.ticket_suffix(conversation)
        lane = keys.for_conversation(conversation)
        assert keys.for_ticket(ticket) == lane
        slots = {slot(k) for k in conversation_keys(keys, conversation, ticket)}
        assert slots == {slot(lane.outbox)}, conversation


def test_lanes_spread_conversations_and_shared_keys_stay_global() -> None:
    keys = Keys("pd", shards=4)
    used = {keys.for_conversation(f"webhook:gw:u{n}").lane for n in range(200)}
    assert used == {0, 1, 2, 3}
    assert len({slot(lane.outbox) for lane in keys.lanes}) == 4
    for shared in (
        keys.provider("rpm"),
        keys.budget("h1"),
        keys.peak_mode,
        keys.response_cache("d"),
        keys.flight("d"),
        keys.rate("tg"),
        keys.stats_day("20261127"),  # the root's: LLM calls and cost
        keys.stats_minute(1),
        keys.waits(0),
        keys.handover_thread("1.2"),
    ):
        assert shared.startswith("{pd}:")


def test_a_lanes_key_asked_of_the_root_raises() -> None:
    keys = Keys("pd", shards=4)
    with pytest.raises(LookupError):
        _ = keys.outbox
    with pytest.raises(LookupError):
        keys.seen("webhook:gw:m1")
    assert keys.for_ticket("T1").lane == 0  # a ticket naming no lane: lane 0
