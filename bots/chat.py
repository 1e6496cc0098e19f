"""``peakdesk chat``: talk to the bot in a terminal, as a customer of the demo shop.

It runs the whole pipeline in this process on the embedded defaults (in-process store, demo
shop, templates; the LLM when ``HOLYSHEEP_API_KEY`` is set): each line is detected, queued,
answered by a worker and shown with the source of its answer (llm, cache, template, fallback)
and what detection made of it. Nothing reaches a shared Redis, Slack or Telegram.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from typing import TextIO

from adapters.store.demo import DemoShop
from bots.runtime import Runtime
from bots.settings import Settings
from core.models import InboundMessage

CHANNEL = "chat"
ANSWER_TIMEOUT_S = 60.0
EXAMPLES = (
    "where is my order {order}?",
    "what payment methods do you accept?",
    "how long does delivery take?",
    "I want to talk to a person",
)


def chat_settings(settings: Settings) -> Settings:
    """The embedded defaults: this process only, no outside channel."""
    return settings.model_copy(
        update={
            "redis_url": None,
            "telegram_bot_token": None,
            "slack_bot_token": None,
            "slack_signing_secret": None,
            "slack_support_channel": None,
            "store_api_base": None,
        }
    )


def choose_identity(
    demo: DemoShop, wanted: str | None, ask: Callable[[str], str], out: TextIO
) -> tuple[str, str]:
    """The demo identity to speak as (and its customer id): ``wanted``, or one picked."""
    identities = demo.identities
    if wanted is not None:
        if wanted not in identities:
            raise SystemExit(f"peakdesk: {wanted!r} is not linked to a demo customer")
        return wanted, identities[wanted]
    choices = list(identities.items())[:8]
    print("Speak as which demo customer?", file=out)
    for number, (identity, customer) in enumerate(choices, 1):
        print(f"  {number}. {identity}  (customer {customer})", file=out)
    answer = ask("number [1]: ").strip() or "1"
    if not answer.isdigit() or not 1 <= int(answer) <= len(choices):
        raise SystemExit("peakdesk: no such choice")
    return choices[int(answer) - 1]


async def chat(
    settings: Settings,
    identity: str | None = None,
    *,
    ask: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
) -> None:
    runtime = Runtime(chat_settings(settings), workers=1, ingest=False)
    await runtime.start()
    try:
        demo = runtime.shop.shop
        assert isinstance(demo, DemoShop)  # chat_settings: no store API
        speaker, customer = choose_identity(demo, identity, ask, out)
        orders = [order.id for order in await demo.orders_of(customer)]
        example = EXAMPLES[0].format(order=orders[0] if orders else "100001")
        llm = "on" if runtime.llm.configured else "off (no HOLYSHEEP_API_KEY: templates answer)"
        print(
            f"You are {speaker} (customer {customer}; orders: {', '.join(orders[:5]) or 'none'})."
            f"\nLLM {llm}, templates {settings.peakdesk_templates}. Try: {example!r}. "
            "Empty line or Ctrl-D to quit.",
            file=out,
        )
        for number in itertools.count(1):
            try:
                text = (await asyncio.to_thread(ask, "you> ")).strip()
            except EOFError:
                break
            if not text:
                break
            print(await _turn(runtime, speaker, number, text), file=out)
    finally:
        await runtime.stop()


async def _turn(runtime: Runtime, speaker: str, number: int, text: str) -> str:
    message = InboundMessage(
        channel=CHANNEL,
        account="terminal",
        message_id=f"{time.time_ns()}-{number}",
        user_id=speaker,
        conversation_id=speaker,
        text=text,
    )
    detection = runtime.detector.detect(text, message.metadata)
    admission = await runtime.queue.admit(
        message, int(detection.priority), wait_until=time.time() + ANSWER_TIMEOUT_S
    )
    reply = await runtime.outbox.wait_for_reply(admission.ticket_id, ANSWER_TIMEOUT_S)
    seen = f"priority {int(detection.priority)}, intent {detection.intent}"
    if detection.order_id:
        seen += f", order {detection.order_id}"
    if reply is None:
        return f"bot> (no answer within {ANSWER_TIMEOUT_S:g} s)  [{seen}]"
    return f"bot [{reply.source.value}]> {reply.text}\n      ({seen}; ticket {reply.ticket_id})"
