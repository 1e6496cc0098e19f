"""The reply handler: turns one queued message into its one reply.

Messages sent to the model: the system prompt, the conversation's history, product information
when ``metadata.product_id`` is known, then the customer's text. A failed LLM call becomes an
apology that says what happens next, with the ticket id and an error code: a customer is never
left without an answer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from core.errors import LLMError
from core.metrics import Metrics
from core.models import MessageMetadata, QueuedMessage, Reply, ReplySource
from core.state import ConversationState, Turn, normalise_text, response_cache_digest

log = logging.getLogger("peakdesk.handler")

DEFAULT_SYSTEM_PROMPT = """\
You are the customer-service assistant of an online shop. You help with order status and \
tracking, product information, returns and exchanges, payments and billing, and general \
shopping questions. Be polite, warm and concise: answer in a few sentences, in the customer's \
language. Never invent order data, prices or policies you were not given; if you cannot help \
or the customer asks for a person, say that you will hand the conversation over to a member \
of the support team."""

APOLOGY = {
    "en": (
        "Sorry, we could not answer your message right away. It is saved under ticket {ticket}"
        " and a member of our support team will get back to you here as soon as possible."
        " (error {code})"
    ),
    "zh": (
        "抱歉，我们暂时无法立即回复您的消息。您的请求已记录，工单号 {ticket}，"
        "客服人员会尽快在此回复您。（错误 {code}）"
    ),
}


class ChatClient(Protocol):
    """What the handler needs of the LLM client (core.llm.HolySheepClient)."""

    async def complete(self, messages: Any) -> Any: ...


def customer_facts(metadata: MessageMetadata) -> dict[str, str]:
    """What a message's metadata tells about the customer, kept as conversation context."""
    facts = {"order id": metadata.order_id, "locale": metadata.locale}
    if metadata.vip:
        facts["status"] = "VIP customer"
    return {key: value for key, value in facts.items() if value}


def apology_text(ticket_id: str, code: str, locale: str | None) -> str:
    lang = "zh" if (locale or "").lower().startswith("zh") else "en"
    return APOLOGY[lang].format(ticket=ticket_id, code=code)


class ReplyHandler:
    """Answers a message with the LLM, the response cache, or an apology (see module doc)."""

    def __init__(
        self,
        llm: ChatClient,
        state: ConversationState,
        metrics: Metrics,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        model: str = "",
    ) -> None:
        self.llm = llm
        self.state = state
        self.metrics = metrics
        self.system_prompt = system_prompt
        self.model = model

    async def answer(self, entry: QueuedMessage) -> Reply:
        message = entry.message
        conversation = message.conversation_key
        snapshot = await self.state.load(conversation, message.metadata.product_id)
        history, product = snapshot.history, snapshot.product
        context = {**snapshot.context, **customer_facts(message.metadata)}
        digest = response_cache_digest(
            conversation,
            normalise_text(message.text),
            history,
            product,
            context,
            self.system_prompt,
            self.model,
        )
        cached = await self.state.cached_response(digest)
        if cached is not None:
            return self._reply(entry, cached, ReplySource.CACHE)

        messages: list[dict[str, str]] = [{"role": "system", "content": self.system_prompt}]
        messages += history
        if product is not None:
            messages.append(
                {
                    "role": "system",
                    "content": "Product the customer is looking at: "
                    + json.dumps(product, ensure_ascii=False),
                }
            )
        if context:
            facts = "; ".join(f"{key}: {value}" for key, value in sorted(context.items()))
            messages.append({"role": "system", "content": f"Known about this customer: {facts}"})
        messages.append({"role": "user", "content": message.text})

        started = time.monotonic()
        try:
            completion = await self.llm.complete(messages)
            text = (completion.text or "").strip()
            if not text:
                raise LLMError("empty completion", code="empty_completion")
        except LLMError as exc:
            self.metrics.llm_errors.labels(exc.code).inc()
            log.warning(
                "ticket %s: LLM failed (%s, status %s); sending the fallback",
                entry.ticket_id,
                exc.code,
                exc.status,
            )
            return self.apology(entry, exc.code)

        self.metrics.llm_latency.observe(time.monotonic() - started)
        usage = completion.usage
        self.metrics.llm_tokens.labels("prompt").inc(usage.prompt_tokens)
        self.metrics.llm_tokens.labels("completion").inc(usage.completion_tokens)
        self.metrics.llm_tokens.labels("cached").inc(usage.cached_tokens)
        self.metrics.llm_cost.inc(completion.cost_usd)
        await self.state.cache_response(digest, text)
        return self._reply(entry, text, ReplySource.LLM)

    async def remember(self, entry: QueuedMessage, reply: Reply) -> None:
        """Add the turn to the history, once its reply is stored for good.

        Done after ``PriorityQueue.finish`` rather than in :meth:`answer`: a message processed
        again after a crash then sees the same history, hits the response cache and gets the
        same answer instead of a second turn.
        """
        turns: list[Turn] = [{"role": "user", "content": entry.message.text}]
        if reply.source in (ReplySource.LLM, ReplySource.CACHE, ReplySource.TEMPLATE):
            turns.append({"role": "assistant", "content": reply.text})
        await self.state.record_turn(
            entry.message.conversation_key, turns, customer_facts(entry.message.metadata)
        )

    def apology(self, entry: QueuedMessage, code: str) -> Reply:
        """The fallback reply: what happens next, the ticket id, an error code."""
        text = apology_text(entry.ticket_id, code, entry.message.metadata.locale)
        return self._reply(entry, text, ReplySource.FALLBACK, error_code=code)

    @staticmethod
    def _reply(
        entry: QueuedMessage, text: str, source: ReplySource, error_code: str | None = None
    ) -> Reply:
        return Reply.for_message(
            entry.message,
            ticket_id=entry.ticket_id,
            priority=entry.priority,
            text=text,
            source=source,
            error_code=error_code,
            wait_until=entry.wait_until,
        )
