"""What staff see in Slack and what customers get back: escaping, trimming, plain text."""

from __future__ import annotations

import json

from adapters.slack.blocks import (
    SECTION_LIMIT,
    customer_text,
    escalation_message,
    stats_text,
    to_plain,
    transcript_text,
)
from core.handover import OWNED, REQUESTED, Handover
from core.ledger import Dashboard


def handover(**changes: object) -> Handover:
    values: dict[str, object] = {
        "conversation_key": "telegram:1:42",
        "status": REQUESTED,
        "ticket_id": "T1",
        "reason": "customer asked (/human)",
        "priority": 0,
        "owner": "",
        "thread": "",
        "requested_at": 0.0,
        "channel": "telegram",
        "account": "1",
        "conversation_id": "42",
        "user_id": "42",
        "message_id": "7",
        "reply_to": {},
        "order_id": "A-1001",
        "locale": "en",
        "transcript": [{"role": "user", "content": "where is <@U1> my order?"}],
    }
    values.update(changes)
    return Handover(**values)  # type: ignore[arg-type]


def test_customer_text_cannot_mention_or_link() -> None:
    assert customer_text("<!channel> <@U123> & <http://evil|click>") == (
        "*Customer:* &lt;!channel&gt; &lt;@U123&gt; &amp; &lt;http://evil|click&gt;"
    )
    text, blocks = escalation_message(handover(reason="<!here> now"))
    shown = json.dumps(blocks)
    assert "<!here>" not in shown and "<@U1>" not in shown and "&lt;@U1&gt;" in shown
    assert "A-1001" in shown and "P0 urgent" in shown and "T1" in text


def test_a_long_transcript_keeps_the_latest_turns_within_one_block() -> None:
    turns = [{"role": "user", "content": f"message {i} " + "x" * 400} for i in range(40)]
    shown = transcript_text(handover(transcript=turns))
    assert len(shown) <= SECTION_LIMIT
    assert "message 39" in shown and "message 0 " not in shown
    assert shown.startswith("_…") and "earlier message(s) not shown" in shown


def test_an_owned_hand_over_offers_return_and_resolve_only() -> None:
    _, blocks = escalation_message(handover(status=OWNED, owner="U9"))
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == ["release", "resolve"]
    assert all(e["value"] == "telegram:1:42" for e in actions["elements"])
    assert "<@U9>" in json.dumps(blocks)


def test_staff_markup_becomes_plain_text() -> None:
    assert to_plain("Track it at <https://t.example/1|this link> &amp; <@U1> see") == (
        "Track it at this link (https://t.example/1) &  see"
    )
    assert (
        to_plain("<https://shop.example/returns> 5 &lt; 6") == "https://shop.example/returns 5 < 6"
    )


def test_stats_show_every_priority_and_the_day() -> None:
    text = stats_text(
        Dashboard(
            depth={0: 3, 1: 0, 2: 1200},
            p95_wait_s={0: 1.25, 1: None, 2: 48.0},
            llm_calls_last_minute=321,
            answers_today={"llm": 30, "cache": 50, "template": 20},
            cost_today_usd=4.5,
            open_handovers=2,
        )
    )
    assert "P0 urgent: 3 queued · p95 wait 1.2 s" in text
    assert "P1 high: 0 queued · p95 wait —" in text
    assert "P2 normal: 1,200 queued · p95 wait 48.0 s" in text
    assert "LLM calls in the last minute: 321" in text
    assert "Answered without the LLM today: 70% of 100" in text
    assert "$4.50" in text and "Open hand-overs: 2" in text
