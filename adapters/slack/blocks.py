"""Pure builders of what support staff see in Slack, and of what goes back to customers.

Customer text is escaped before it enters a Slack message (``<!channel>`` from a customer must
stay text), long transcripts are trimmed to what one section block holds (3,000 characters),
keeping the most recent turns; staff text is turned back into plain text for the customer.
"""

from __future__ import annotations

import re
from typing import Any, Final

from core.handover import OWNED, REQUESTED, RESOLVED, RETURNED, Handover
from core.ledger import Dashboard

SECTION_LIMIT: Final = 3000  # characters of one section block's text
TEXT_LIMIT: Final = 3900  # of a plain message; Slack advises under 4,000
NOTE_PREFIX: Final = "//"  # thread messages starting with it stay among staff

TAKE_OVER: Final = "takeover"
RETURN_TO_BOT: Final = "release"
RESOLVE: Final = "resolve"

PRIORITY_NAMES: Final = {0: "P0 urgent", 1: "P1 high", 2: "P2 normal"}
_STATUS: Final = {
    REQUESTED: ":hourglass_flowing_sand: waiting for a person",
    RETURNED: ":robot_face: returned to the bot",
    RESOLVED: ":white_check_mark: resolved",
}


def escape(text: str) -> str:
    """Slack's three control characters, so customer text cannot mention or link anything."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_text(handover: Handover) -> str:
    if handover.status == OWNED:
        return f":technologist: taken over by <@{handover.owner}>"
    return _STATUS.get(handover.status, handover.status)


def transcript_text(handover: Handover, limit: int = SECTION_LIMIT) -> str:
    """The latest turns that fit in ``limit`` characters, oldest first."""
    lines: list[str] = []
    used = 0
    turns = handover.transcript
    for index in range(len(turns) - 1, -1, -1):
        turn = turns[index]
        who = "Customer" if turn.get("role") == "user" else "Bot"
        line = f"*{who}:* {escape(trim(turn.get('content', ''), 1000))}"
        if used + len(line) + 1 > limit - 40:
            lines.append(f"_… {index + 1} earlier message(s) not shown_")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(reversed(lines)) or "_no messages_"


def escalation_message(handover: Handover) -> tuple[str, list[dict[str, Any]]]:
    """The thread's parent: who, why, how urgent, the last turns, and the three buttons."""
    priority = PRIORITY_NAMES.get(handover.priority, f"P{handover.priority}")
    customer = f"{handover.channel} · {escape(handover.user_id)}"
    text = f"Hand-over {handover.ticket_id} ({priority}): {escape(handover.reason)}"
    fields = [
        f"*Customer*\n{customer}",
        f"*Priority*\n{priority}",
        f"*Reason*\n{escape(trim(handover.reason, 300))}",
        f"*Order*\n{escape(handover.order_id) if handover.order_id else '—'}",
        f"*Ticket*\n`{handover.ticket_id}`",
        f"*Status*\n{status_text(handover)}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": trim(text, 150)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": transcript_text(handover)}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Reply in this thread to answer the customer "
                    f"(`{NOTE_PREFIX}` at the start keeps a message among staff).",
                }
            ],
        },
    ]
    if handover.is_open:
        blocks.append(_buttons(handover))
    return text, blocks


def _buttons(handover: Handover) -> dict[str, Any]:
    def button(action: str, label: str, style: str | None = None) -> dict[str, Any]:
        element: dict[str, Any] = {
            "type": "button",
            "action_id": action,
            "text": {"type": "plain_text", "text": label},
            "value": handover.conversation_key,
        }
        if style:
            element["style"] = style
        return element

    elements = [
        button(TAKE_OVER, "Take over", "primary"),
        button(RETURN_TO_BOT, "Return to bot"),
        button(RESOLVE, "Resolve", "danger"),
    ]
    if handover.status == OWNED:
        elements = elements[1:]
    return {"type": "actions", "block_id": "handover", "elements": elements}


def customer_text(text: str) -> str:
    """A customer's message, as posted into the thread."""
    return f"*Customer:* {escape(trim(text, TEXT_LIMIT - 20))}"


def status_note(status: str, actor: str) -> str:
    by = f" by <@{actor}>" if actor else ""
    if status == OWNED:
        return f":technologist: Taken over{by}: the bot stays quiet in this conversation."
    if status == RETURNED:
        return f":robot_face: Returned to the bot{by}."
    if status == REQUESTED:  # escalated again soon after it was closed
        return ":hourglass_flowing_sand: Handed over again: waiting for a person."
    return f":white_check_mark: Resolved{by}."


def forgotten_message(ticket_id: str) -> tuple[str, list[dict[str, Any]]]:
    """What replaces a hand-over's parent message once the customer's data was deleted (the
    transcript goes with it), and the note in its thread."""
    text = (
        f"Hand-over {ticket_id}: closed, the customer's data was deleted at their request."
        " Replies in this thread no longer reach the customer."
    )
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def undelivered_note(text: str) -> str:
    return (
        f":warning: This reply could not be delivered to the customer: “{escape(trim(text, 500))}”"
    )


_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_BARE = re.compile(r"<([^<>|]+)>")


def to_plain(text: str) -> str:
    """Staff mrkdwn as the customer should read it: links as ``label (url)``, entities back."""
    text = _LINK.sub(
        lambda m: (
            m.group(2) if m.group(1).startswith(("@", "#", "!")) else f"{m.group(2)} ({m.group(1)})"
        ),
        text,
    )
    text = _BARE.sub(lambda m: "" if m.group(1).startswith(("@", "!")) else m.group(1), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def stats_text(dashboard: Dashboard, peak: str | None = None) -> str:
    """The ``/peakdesk stats`` answer (``peak``: the peak mode's summary line)."""
    lines = ["*peakdesk queue* (all processes)"]
    for priority, name in PRIORITY_NAMES.items():
        wait = dashboard.p95_wait_s.get(priority)
        shown = "—" if wait is None else f"{wait:.1f} s"
        lines.append(f"• {name}: {dashboard.depth.get(priority, 0):,} queued · p95 wait {shown}")
    share = dashboard.without_llm_share
    lines += [
        f"• LLM calls in the last minute: {dashboard.llm_calls_last_minute:,}",
        "• Answered without the LLM today: "
        + ("—" if share is None else f"{share:.0%} of {dashboard.answered_today:,}"),
        f"• LLM cost today (UTC): ${dashboard.cost_today_usd:,.2f}",
        f"• Open hand-overs: {dashboard.open_handovers:,}",
    ]
    if peak is not None:
        lines.append(f"• Peak mode: {peak}")
    return "\n".join(lines)
