"""Conversation state in Redis: history, customer context, catalogue caches, response cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from core.keys import Keys
from core.store import lua_script

Turn = dict[str, str]  # {"role": "user"|"assistant", "content": "..."}


def normalise_text(text: str) -> str:
    """Lower-case, trimmed, whitespace collapsed: the form the response cache is keyed on."""
    return " ".join(text.lower().split())


def response_cache_digest(*parts: str | Sequence[Turn] | Mapping[str, Any] | None) -> str:
    """A digest over everything an answer depends on (conversation, text, history, context...).

    Any change in one of the parts gives a new key, so a cached answer can never be served to a
    conversation it no longer fits.
    """
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(payload.encode(), digest_size=20).hexdigest()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the handler reads about a conversation before answering it."""

    history: list[Turn]
    context: dict[str, str]
    product: dict[str, Any] | None
    handover_status: str | None = None  # of the conversation's hand-over record, if any
    handover_ticket: str | None = None  # the ticket that handed it over


class ConversationState:
    """Per-conversation history and context, plus the caches the handler reads."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        history_turns: int = 20,
        history_ttl_s: int = 3600,
        catalogue_ttl_s: int = 24 * 3600,
        response_ttl_s: int = 3600,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.history_turns = history_turns
        self.history_ttl_s = history_ttl_s
        self.catalogue_ttl_s = catalogue_ttl_s
        self.response_ttl_s = response_ttl_s
        self._lookup = redis.register_script(lua_script("lookup.lua"))

    async def load(self, conversation_key: str, product_id: str | None = None) -> Snapshot:
        """History, context, hand-over status and product information of a conversation, in
        one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            # At 0 turns no history: LRANGE 1 0 is empty (-0 -1 would be the whole list).
            start, stop = (-2 * self.history_turns, -1) if self.history_turns else (1, 0)
            pipe.lrange(self.keys.history(conversation_key), start, stop)
            pipe.hgetall(self.keys.context(conversation_key))
            pipe.hmget(self.keys.handover(conversation_key), "status", "ticket")
            if product_id:
                pipe.get(self.keys.product(product_id))
            history, context, (status, ticket), *product = await pipe.execute()
        return Snapshot(
            history=[json.loads(item) for item in history],
            context=context,
            product=json.loads(product[0]) if product and product[0] else None,
            handover_status=status,
            handover_ticket=ticket,
        )

    async def history(self, conversation_key: str) -> list[Turn]:
        """The last ``history_turns`` turns (a turn = one customer message and its answer)."""
        return (await self.load(conversation_key)).history

    async def record_turn(
        self,
        conversation_key: str,
        turns: Sequence[Turn],
        context: Mapping[str, str] | None = None,
    ) -> None:
        """Append ``turns`` to the history and merge ``context`` in, atomically, with TTLs.
        At 0 history turns nothing is kept (what an earlier setting kept is deleted)."""
        history_key = self.keys.history(conversation_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            if self.history_turns:
                pipe.rpush(history_key, *(json.dumps(t, ensure_ascii=False) for t in turns))
                pipe.ltrim(history_key, -2 * self.history_turns, -1)
                pipe.expire(history_key, self.history_ttl_s)
            else:
                pipe.delete(history_key)
            if context:
                context_key = self.keys.context(conversation_key)
                pipe.hset(context_key, mapping=dict(context))  # type: ignore[arg-type]
                pipe.expire(context_key, self.history_ttl_s)
            await pipe.execute()

    async def forget(self, conversation_key: str) -> int:
        """Delete what is stored about one conversation (README: Customer data and retention):
        its history, the customer context learnt from it, its failure count and its
        acknowledgement marker. Returns how many of these existed."""
        return int(
            await self.redis.delete(
                self.keys.history(conversation_key),
                self.keys.context(conversation_key),
                self.keys.failures(conversation_key),
                self.keys.acked(conversation_key),
            )
        )

    async def put_product(self, product_id: str, info: Mapping[str, Any]) -> None:
        await self.redis.set(
            self.keys.product(product_id),
            json.dumps(info, ensure_ascii=False),
            ex=self.catalogue_ttl_s,
        )

    async def policy(self, name: str) -> str | None:
        return cast(str | None, await self.redis.get(self.keys.policy(name)))

    async def put_policy(self, name: str, text: str) -> None:
        await self.redis.set(self.keys.policy(name), text, ex=self.catalogue_ttl_s)

    async def lookup(
        self, digest: str, shared: str | None, flight_ttl_s: int
    ) -> tuple[str, str | None]:
        """The cached answer of a message in one round trip (see ``scripts/lookup.lua``):
        ``("conversation"|"shared", text)``, or ``("lead"|"follow"|"miss", None)``."""
        keys = [self.keys.response_cache(digest)]
        if shared is not None:
            keys += [self.keys.response_cache(shared), self.keys.flight(shared)]
        found = await self._lookup(keys=keys, args=[flight_ttl_s])
        return str(found[0]), (str(found[1]) if len(found) > 1 else None)

    async def store_answer(
        self,
        digest: str,
        text: str,
        *,
        shared: str | None = None,
        end_flight: str | None = None,
    ) -> None:
        """Cache an answer for its conversation (and for everyone under ``shared``), and end
        our single flight, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.response_cache(digest), text, ex=self.response_ttl_s)
            if shared is not None:
                pipe.set(self.keys.response_cache(shared), text, ex=self.response_ttl_s)
            if end_flight is not None:
                pipe.delete(self.keys.flight(end_flight))
            await pipe.execute()

    async def renew_flight(self, digest: str, ttl_s: int) -> None:
        await self.redis.expire(self.keys.flight(digest), ttl_s)

    async def end_flight(self, digest: str) -> None:
        await self.redis.delete(self.keys.flight(digest))

    async def flight_open(self, digest: str) -> bool:
        return bool(await self.redis.exists(self.keys.flight(digest)))

    async def cached_response(self, digest: str) -> str | None:
        return cast(str | None, await self.redis.get(self.keys.response_cache(digest)))
