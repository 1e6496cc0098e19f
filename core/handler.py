"""The reply handler: turns one queued message into its one reply, or passes it to people.

Messages sent to the model: the system prompt, the conversation's history, product information
when ``metadata.product_id`` is known, then the customer's text; for an answer shared by intent
at a peak, the system prompt and the intent's canonical question only (:mod:`core.canonical`,
see ``ReplyHandler._shared_question``). A failed LLM call becomes an apology that says what
happens next, with the ticket id and an error code: a customer is never left without an answer.

With a staffed desk (:class:`core.handover.HandoverDesk`) the handler also hands conversations
to people: when the customer asks for a person (the ``contact_human_agent`` intent), when the
model says it cannot help, after repeated failed answers, and for complaints at priority 0-1.
While people have a conversation, its messages are passed to them instead of answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from redis.exceptions import RedisError

from core.aio import slot_released
from core.canonical import canonical_prompt
from core.circuit import OPEN as OPEN_CIRCUIT
from core.circuit import CircuitBreaker
from core.errors import LLMError
from core.handover import OPEN, Escalation, HandoverDesk, escalation_notice
from core.intents import OTHER
from core.ledger import Ledger
from core.metrics import Metrics
from core.models import (
    MessageMetadata,
    QueuedMessage,
    Reply,
    ReplySource,
    language,
    spoken_language,
)
from core.peak import PeakMonitor, Plan
from core.priority import Detection, PriorityDetector
from core.shop import Shop, ShopUnavailable
from core.state import ConversationState, Snapshot, Turn, normalise_text, response_cache_digest
from core.templates import TemplateAnswers, TemplateMode
from core.tools import CustomerTools, ShopTools

log = logging.getLogger("peakdesk.handler")

DEFAULT_SYSTEM_PROMPT = """\
You are the customer-service assistant of an online shop. You help with order status and \
tracking, product information, returns and exchanges, payments and billing, and general \
shopping questions. Be polite, warm and concise: answer in a few sentences, in the customer's \
language. Never invent order data, prices or policies you were not given. If you cannot help, \
or the customer asks for a person, say that a member of the support team will take over, and \
end your answer with the tag [handover]."""

HANDOVER_TAG: Final = "[handover]"
# What a model says when it cannot help, for system prompts without the tag instruction.
_CANNOT_HELP: Final = re.compile(
    r"\b(?:i|we)(?:'m| am| are)? (?:can ?not|can't|unable to) (?:help|assist) (?:you )?with\b"
    r"|\bhand (?:you|this|the conversation|it) (?:over|off)\b"
    r"|\btransfer(?:ring)? you\b"
    r"|\bconnect(?:ing)? you (?:with|to) (?:a|an|one of our) (?:human|person|agent|colleague)",
    re.IGNORECASE,
)
TOOLS_NOTE: Final = (
    "You can look up this customer's own orders, the shop's products and its policies with "
    "the tools: use them instead of guessing. Only this customer's orders can be found."
)
MAX_TOOL_ROUNDS: Final = 3  # rounds of tool calls before the model must answer
FLIGHT_TTL_S: Final = 5  # a crashed process's flight ends this soon (renewed while alive)
# Longest wait for another process's shared answer: its call may queue for room under the
# provider limits for minutes at a peak; a crashed leader's flight lapses in FLIGHT_TTL_S.
FLIGHT_WAIT_S: Final = 300
FLIGHT_POLL_S: Final = 0.1
HUMAN_INTENT: Final = "contact_human_agent"
COMPLAINT_INTENT: Final = "complaint"
# Failures that count against the provider (its circuit breaker), besides retryable ones.
PROVIDER_FAILURES: Final = frozenset(("timeout", "connection_error"))
# Intents whose answers are never shared by intent alone: too vague, handed to people, or
# about the asker's own orders (urgent order and payment problems, where an order or refund
# is, its invoice): a generic answer would not answer them, and the model looks the
# customer's orders up with the tools of an answer of their own.
PERSONAL_INTENTS: Final = frozenset(
    (
        "cancel_order",
        "change_order",
        "change_shipping_address",
        "payment_issue",
        "track_order",
        "track_refund",
        "check_invoice",
        "get_invoice",
    )
)
UNSHARED_INTENTS: Final = frozenset((OTHER, HUMAN_INTENT, COMPLAINT_INTENT)) | PERSONAL_INTENTS
# What makes a question particular: digits (amounts, dates, numbers), an email or a handle.
_DETAILS: Final = re.compile(r"\d|@")
GENERIC_MAX_CHARS: Final = 200
NORMAL: Final = Plan(0, None, None, None, templates_first=False)

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


@dataclass(frozen=True, slots=True)
class SharedQuestion:
    """A question whose answer every customer asking it may get (see ``_shared_question``)."""

    key: str  # of the shared answer in the response cache (and of its single flight)
    # By intent: the canonical prompt and the tools it may use (none of any customer's). None:
    # shared by the same text, answered from the asker's own prompt (identical for all).
    prompt: list[dict[str, Any]] | None = None
    tools: ShopTools | None = None


class ChatClient(Protocol):
    """What the handler needs of the LLM client (core.llm.HolySheepClient)."""

    async def complete(
        self,
        messages: Any,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        tools: Any = None,
        tool_choice: Any = None,
        priority: int = 0,
    ) -> Any: ...


def customer_facts(metadata: MessageMetadata) -> dict[str, str]:
    """What a message's metadata tells about the customer, kept as conversation context."""
    facts = {"order id": metadata.order_id, "locale": metadata.locale}
    if metadata.vip:
        facts["status"] = "VIP customer"
    return {key: value for key, value in facts.items() if value}


def apology_text(ticket_id: str, code: str, locale: str | None) -> str:
    return APOLOGY[language(locale)].format(ticket=ticket_id, code=code)


def split_handover_tag(text: str) -> tuple[str, bool]:
    """The model's answer without the hand-over tag, and whether it asked for people."""
    if HANDOVER_TAG in text.lower():
        cleaned = re.sub(re.escape(HANDOVER_TAG), "", text, flags=re.IGNORECASE).strip()
        return cleaned, True
    return text, bool(_CANNOT_HELP.search(text))


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
        detector: PriorityDetector | None = None,
        desk: HandoverDesk | None = None,
        ledger: Ledger | None = None,
        escalate_after_failures: int = 2,
        shop: Shop | None = None,
        templates: TemplateAnswers | None = None,
        template_mode: TemplateMode = "fallback",
        peak: PeakMonitor | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.llm = llm
        self.state = state
        self.metrics = metrics
        self.system_prompt = system_prompt
        self.model = model
        self.detector = detector or PriorityDetector()
        self.desk = desk if desk is not None and desk.staffed else None
        self.ledger = ledger
        self.escalate_after_failures = escalate_after_failures
        self.shop = shop
        self.templates = templates if template_mode != "never" else None
        self.template_mode = template_mode
        self.peak = peak
        self.breaker = breaker
        self._flights: dict[str, asyncio.Future[str | None]] = {}

    async def answer(self, entry: QueuedMessage) -> Reply | None:
        """The reply to ``entry``; None when it was passed to the people who have its
        conversation (no reply from the bot)."""
        message = entry.message
        conversation = message.conversation_key
        snapshot = await self.state.load(conversation, message.metadata.product_id)
        if (
            self.desk is not None
            and snapshot.handover_status in OPEN
            and snapshot.handover_ticket != entry.ticket_id
            and await self.desk.hold(entry)
        ):
            # Kept in the history, so the bot knows what was said once it answers again.
            await self.state.record_turn(conversation, [{"role": "user", "content": message.text}])
            return None
        detection = self.detector.detect(message.text, message.metadata)
        if self.desk is not None and detection.intent == HUMAN_INTENT:
            return await self._hand_over(
                entry, "customer asked for a person", "", ReplySource.TEMPLATE, snapshot, detection
            )

        tools = (
            CustomerTools(self.shop, message.identity, message.metadata.locale)
            if self.shop is not None
            else None
        )
        plan = self.peak.plan(entry.priority) if self.peak is not None else NORMAL
        if self.template_mode == "always" or plan.templates_first:
            templated = await self._templated(detection, tools, message.metadata.locale)
            if templated is not None:
                return self._reply(entry, templated, ReplySource.TEMPLATE)

        history, product = snapshot.history, snapshot.product
        if plan.history_turns is not None:
            history = history[-2 * plan.history_turns :]
        context = {**snapshot.context, **customer_facts(message.metadata)}
        digest = response_cache_digest(
            conversation,
            normalise_text(message.text),
            history,
            product,
            context,
            self.system_prompt,
            plan.model or self.model,
        )
        shared = self._shared_question(entry, snapshot, detection, context, plan)
        shared_key = shared.key if shared is not None else None
        found, text = await self.state.lookup(digest, shared_key, FLIGHT_TTL_S)
        source = ReplySource.CACHE
        if text is None:
            if shared is not None and shared.prompt is not None:
                prompt, prompt_tools = shared.prompt, shared.tools
            else:
                prompt = self._prompt(message.text, history, product, context, tools)
                prompt_tools = tools
            try:
                text, source = await self._answer_with_llm(
                    entry, found, digest, shared_key, prompt, prompt_tools, plan
                )
            except LLMError as exc:
                if self.template_mode == "fallback":
                    templated = await self._templated(detection, tools, message.metadata.locale)
                    if templated is not None:
                        return self._reply(entry, templated, ReplySource.TEMPLATE)
                return await self.fallback(entry, exc.code, snapshot, detection)

        text, cannot_help = split_handover_tag(text)
        if self.desk is not None:
            if tools is not None and tools.human_reason is not None:
                reason = f"the bot asked for a person: {tools.human_reason}"
                return await self._hand_over(entry, reason, text, source, snapshot, detection)
            if cannot_help:
                return await self._hand_over(
                    entry, "the bot could not help", text, source, snapshot, detection
                )
            if detection.intent == COMPLAINT_INTENT and entry.priority <= 1:
                reason = f"complaint at priority {entry.priority}"
                return await self._hand_over(entry, reason, text, source, snapshot, detection)
        return self._reply(entry, text, source)

    def _shared_question(
        self,
        entry: QueuedMessage,
        snapshot: Snapshot,
        detection: Detection,
        context: dict[str, str],
        plan: Plan,
    ) -> SharedQuestion | None:
        """How this message's answer is shared with other customers, or None when it is
        personal: the conversation has history or customer context, or names an order or
        product (then nothing of it is shared, and it gets nothing shared).

        The same normalised text shares an answer always; in peak mode (ladder level 1 and
        up) so does the same intent in the same language: at 500x traffic thousands ask how
        refunds work in their own words, and one answer serves them all. That answer is the
        model's answer to the intent's canonical question (``core.canonical``), never to a
        customer's own words, and the asker gets it too. Not when the language is unknown (a
        German answer must not reach an English asker), nor when the question carries details
        of its own (numbers, an address, a long story): the generic answer would not answer it.
        """
        message = entry.message
        personal = {key: value for key, value in context.items() if key != "locale"}
        if snapshot.history or personal or snapshot.product is not None or detection.order_id:
            return None
        locale = message.metadata.locale or ""
        model = plan.model or self.model
        lang = spoken_language(message.text, locale)
        prompt = (
            canonical_prompt(
                self.system_prompt, detection.intent, lang, shop_tools=self.shop is not None
            )
            if plan.level >= 1
            and lang is not None
            and detection.intent not in UNSHARED_INTENTS
            and len(message.text) <= GENERIC_MAX_CHARS
            and not _DETAILS.search(message.text)
            else None
        )
        if prompt is not None:
            # Shared by intent. Why no customer's data can reach another: the prompt holds the
            # system prompt, the canonical question and a checked language code, nothing any
            # customer wrote or is; its tools read the shop's products and policies only. The
            # key is a digest of exactly that prompt, the model and the tools offered.
            tools = ShopTools(self.shop, lang) if self.shop is not None else None
            offered = [spec["function"]["name"] for spec in tools.specs] if tools else []
            key = response_cache_digest("shared", "canonical", prompt, model, offered)
            return SharedQuestion(key, prompt, tools)
        # Shared by the same text. Why no customer's data can reach another: the asker's
        # prompt (``_prompt``) holds the system prompt, no history, no product, of the
        # customer context only the locale, which the key holds, and the text, which is the
        # same (up to case and spacing) for everyone who shares the key. An answer the model
        # built with a personal tool is not shared (``_answer_with_llm``). "text" sets these
        # keys apart from every other: earlier versions cached answers shared by intent,
        # written from a customer's own words, under the key the text "intent:<name>" would
        # have here, and a customer typing that must not read one left from before an upgrade.
        key = response_cache_digest(
            "shared",
            "text",
            normalise_text(message.text),
            locale,
            self.system_prompt,
            model,
            "tools" if self.shop is not None else "",
        )
        return SharedQuestion(key)

    async def _answer_with_llm(
        self,
        entry: QueuedMessage,
        found: str,
        digest: str,
        shared: str | None,
        prompt: list[dict[str, Any]],
        tools: ShopTools | None,
        plan: Plan,
    ) -> tuple[str, ReplySource]:
        """The LLM's answer to ``prompt``, once per question that any customer may share
        (single flight: shared questions arriving together make one call, in this process and
        across processes, cached for everyone). ``found`` is what the lookup found: ``lead``
        (we answer for all), ``follow`` (another process is answering) or ``miss`` (personal).
        An answer that used the customer's own data (a personal tool) is never shared."""
        if shared is None or found == "miss":
            text = await self._complete(entry, prompt, tools, plan)
            await self.state.store_answer(digest, text)
            return text, ReplySource.LLM
        flight = self._flights.get(shared)
        # The same question is being answered in this process. Not if we hold the flight: a
        # follower whose lookup reply was read before ours may have registered first, and it
        # waits for us (waiting for it, nobody would answer until the flight lapsed).
        if flight is not None and found != "lead":
            async with slot_released():
                answered = await asyncio.shield(flight)
            if answered is not None:
                await self.state.store_answer(digest, answered)
                return answered, ReplySource.CACHE
            found = "miss"
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._flights[shared] = future
        leading = found == "lead"
        try:
            if found == "follow":
                async with slot_released():
                    answered = await self._await_flight(shared)
                if answered is not None:
                    future.set_result(answered)
                    await self.state.store_answer(digest, answered)
                    return answered, ReplySource.CACHE
            renewing = (
                asyncio.get_running_loop().create_task(self._renew_flight(shared))
                if leading
                else None
            )
            try:
                text = await self._complete(entry, prompt, tools, plan)
            finally:
                if renewing is not None:
                    renewing.cancel()
            shareable = tools is None or not tools.used_personal
            await self.state.store_answer(
                digest,
                text,
                shared=shared if shareable else None,
                end_flight=shared if leading else None,
            )
            leading = False  # ended with the store
            future.set_result(text if shareable else None)
            return text, ReplySource.LLM
        except LLMError as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: followers may be none
            raise
        finally:
            if not future.done():  # cancelled: followers answer on their own
                future.set_result(None)
            if self._flights.get(shared) is future:  # a leader may have registered since
                del self._flights[shared]
            if leading:
                await self.state.end_flight(shared)

    async def _renew_flight(self, key: str) -> None:
        """Keep our flight alive while we compute (it lapses soon after a crash)."""
        while True:
            await asyncio.sleep(FLIGHT_TTL_S / 3)
            with contextlib.suppress(RedisError):  # at worst another process answers too
                await self.state.renew_flight(key, FLIGHT_TTL_S)

    async def _await_flight(self, key: str) -> str | None:
        """Wait for another process's shared answer; None when it gave none (or died)."""
        deadline = time.monotonic() + FLIGHT_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(FLIGHT_POLL_S)
            text = await self.state.cached_response(key)
            if text is not None:
                return text
            if not await self.state.flight_open(key):
                # The answer may have been stored, and the flight ended, since we looked.
                return await self.state.cached_response(key)
        return None

    def _prompt(
        self,
        text: str,
        history: list[Turn],
        product: dict[str, Any] | None,
        context: dict[str, str],
        tools: CustomerTools | None,
    ) -> list[dict[str, Any]]:
        """The prompt of a customer's own answer: system prompt, history, product, context,
        then the customer's text (see the module doc)."""
        # One system message, the same for every customer: the provider's prefix cache applies.
        system = (
            f"{self.system_prompt}\n\n{TOOLS_NOTE}" if tools is not None else self.system_prompt
        )
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
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
        messages.append({"role": "user", "content": text})
        return messages

    async def _complete(
        self,
        entry: QueuedMessage,
        prompt: list[dict[str, Any]],
        tools: ShopTools | None = None,
        plan: Plan = NORMAL,
    ) -> str:
        """The LLM's answer to ``prompt`` (raises LLMError), after at most MAX_TOOL_ROUNDS
        rounds of tool calls; usage and cost of every call go to the metrics and the ledger."""
        messages = list(prompt)  # the tool rounds add to a copy: a shared prompt stays as is
        try:
            for round_ in range(MAX_TOOL_ROUNDS + 1):
                last = round_ == MAX_TOOL_ROUNDS
                completion = await self._call(messages, tools, plan, entry.priority, last=last)
                if tools is None or not completion.tool_calls or round_ == MAX_TOOL_ROUNDS:
                    break
                messages.append(
                    {
                        "role": "assistant",
                        "content": completion.text or None,
                        "tool_calls": completion.tool_calls,
                    }
                )
                for call in completion.tool_calls:
                    function = call.get("function") or {}
                    result = await tools.call(
                        str(function.get("name", "")), function.get("arguments")
                    )
                    messages.append(
                        {"role": "tool", "tool_call_id": str(call.get("id", "")), "content": result}
                    )
            text = (completion.text or "").strip()
            if not text:
                raise LLMError("empty completion", code="empty_completion")
        except LLMError as exc:
            self.metrics.llm_errors.labels(exc.code).inc()
            log.warning(
                "ticket %s: LLM failed (%s, status %s)",
                entry.ticket_id,
                exc.code,
                exc.status,
            )
            raise
        return str(text)

    async def _call(
        self,
        messages: list[dict[str, Any]],
        tools: ShopTools | None,
        plan: Plan,
        priority: int,
        *,
        last: bool,
    ) -> Any:
        """One LLM call, accounted for, unless the token budget is spent or the provider's
        circuit is open. On the last round the model must answer in words."""
        if self.peak is not None and self.peak.budget_exhausted:
            raise LLMError("the LLM token budget is spent", code="budget_exhausted")
        if self.breaker is not None and not self.breaker.allow():
            raise LLMError("the LLM provider keeps failing", code="provider_unavailable")
        started = time.monotonic()
        options: dict[str, Any] = {
            "model": plan.model,
            "max_tokens": plan.max_tokens,
            "priority": priority,
        }
        if tools is not None:
            options |= {"tools": tools.specs, "tool_choice": "none" if last else None}
        try:
            completion = await self.llm.complete(messages, **options)
        except LLMError as exc:
            failed = exc.retryable or exc.status == 429 or exc.code in PROVIDER_FAILURES
            if self.breaker is not None and failed:
                self.breaker.record_failure()
            raise
        finally:
            if self.breaker is not None:
                self.metrics.provider_circuit.set(self.breaker.state == OPEN_CIRCUIT)
        if self.breaker is not None:
            self.breaker.record_success()
        self.metrics.llm_latency.observe(time.monotonic() - started)
        if self.peak is not None:  # the provider's time: queueing for room is counted apart
            self.peak.record_latency(completion.latency_s)
        usage = completion.usage
        self.metrics.llm_tokens.labels("prompt").inc(usage.prompt_tokens)
        self.metrics.llm_tokens.labels("completion").inc(usage.completion_tokens)
        self.metrics.llm_tokens.labels("cached").inc(usage.cached_tokens)
        self.metrics.llm_cost.inc(completion.cost_usd)
        if self.ledger is not None:
            self.ledger.record_llm_call(
                completion.cost_usd,
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.completion_tokens,
            )
        return completion

    async def _templated(
        self, detection: Detection, tools: CustomerTools | None, locale: str | None
    ) -> str | None:
        """The templated answer to this message, if it has one (None also when the store is
        down: the caller answers otherwise)."""
        if self.templates is None or tools is None or not self.templates.covers(detection.intent):
            return None
        try:
            return await self.templates.answer(detection.intent, tools, detection.order_id, locale)
        except ShopUnavailable:
            log.info("templated answer skipped: the store is unavailable")
            return None

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

    async def fallback(
        self,
        entry: QueuedMessage,
        code: str,
        snapshot: Snapshot | None = None,
        detection: Detection | None = None,
    ) -> Reply:
        """The apology (what happens next, the ticket id, an error code); repeated failures in
        one conversation hand it to people."""
        text = apology_text(entry.ticket_id, code, entry.message.metadata.locale)
        if self.desk is not None:
            failures = await self.desk.count_failure(entry.message.conversation_key)
            if failures >= self.escalate_after_failures:
                reason = f"{failures} failed answers within an hour ({code})"
                return await self._hand_over(
                    entry, reason, text, ReplySource.FALLBACK, snapshot, detection, code
                )
        return self._reply(entry, text, ReplySource.FALLBACK, error_code=code)

    async def _hand_over(
        self,
        entry: QueuedMessage,
        reason: str,
        text: str,
        source: ReplySource,
        snapshot: Snapshot | None,
        detection: Detection | None,
        error_code: str | None = None,
    ) -> Reply:
        """Escalate the conversation and tell the customer (after ``text``, if any)."""
        assert self.desk is not None
        message = entry.message
        if snapshot is None:
            snapshot = await self.state.load(message.conversation_key)
        detection = detection or self.detector.detect(message.text, message.metadata)
        escalation = await self.desk.escalate(
            message,
            ticket_id=entry.ticket_id,
            priority=entry.priority,
            reason=reason,
            order_id=detection.order_id or snapshot.context.get("order id"),
            history=snapshot.history,
            answer=text if source in (ReplySource.LLM, ReplySource.CACHE) else "",
        )
        if escalation in (Escalation.POSTED, Escalation.REOPENED):
            log.info("ticket %s: handed over to people (%s)", entry.ticket_id, reason)
        notice = escalation_notice(
            escalation, entry.ticket_id, await self.desk.estimated_wait(), message.metadata.locale
        )
        return self._reply(entry, f"{text}\n\n{notice}" if text else notice, source, error_code)

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
            message_ids=entry.message_ids,
        )
