"""Conversation state in Redis: history, customer context, catalogue caches, response cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis

from core.keys import Keys

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

    async def history(self, conversation_key: str) -> list[Turn]:
        """The last ``history_turns`` turns (a turn = one customer message and its answer)."""
        raw = await self.redis.lrange(
            self.keys.history(conversation_key), -2 * self.history_turns, -1
        )
        return [json.loads(item) for item in raw]

    async def append(self, conversation_key: str, turns: Sequence[Turn]) -> None:
        key = self.keys.history(conversation_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *(json.dumps(t, ensure_ascii=False) for t in turns))
            pipe.ltrim(key, -2 * self.history_turns, -1)
            pipe.expire(key, self.history_ttl_s)
            await pipe.execute()

    async def context(self, conversation_key: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.keys.context(conversation_key)))

    async def update_context(self, conversation_key: str, values: Mapping[str, str]) -> None:
        if not values:
            return
        key = self.keys.context(conversation_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=dict(values))  # type: ignore[arg-type]
            pipe.expire(key, self.history_ttl_s)
            await pipe.execute()

    async def forget(self, conversation_key: str) -> None:
        """Delete everything stored about one conversation."""
        await self.redis.delete(
            self.keys.history(conversation_key), self.keys.context(conversation_key)
        )

    async def product(self, product_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.product(product_id))
        return json.loads(raw) if raw else None

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

    async def cached_response(self, digest: str) -> str | None:
        return cast(str | None, await self.redis.get(self.keys.response_cache(digest)))

    async def cache_response(self, digest: str, text: str) -> None:
        await self.redis.set(self.keys.response_cache(digest), text, ex=self.response_ttl_s)
