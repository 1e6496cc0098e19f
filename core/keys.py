"""Redis key layout, in one place.

Every key carries the hash tag ``{<prefix>}`` so that the keys one Lua script touches (the
dedupe key, the three priority streams, the outbox) live in one hash slot on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIORITIES = (0, 1, 2)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "pd"

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    def stream(self, priority: int) -> str:
        return f"{self.tag}:q:{priority}"

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.stream(p) for p in PRIORITIES)

    @property
    def dead_letters(self) -> str:
        return f"{self.tag}:dead"

    @property
    def outbox(self) -> str:
        return f"{self.tag}:out"

    @property
    def dead_deliveries(self) -> str:
        return f"{self.tag}:out:dead"

    def seen(self, dedupe_key: str) -> str:
        return f"{self.tag}:seen:{dedupe_key}"

    def reply(self, ticket_id: str) -> str:
        return f"{self.tag}:reply:{ticket_id}"

    def delivery_claim(self, ticket_id: str) -> str:
        return f"{self.tag}:claim:{ticket_id}"

    def history(self, conversation_key: str) -> str:
        return f"{self.tag}:hist:{conversation_key}"

    def context(self, conversation_key: str) -> str:
        return f"{self.tag}:ctx:{conversation_key}"

    def response_cache(self, digest: str) -> str:
        return f"{self.tag}:rcache:{digest}"

    def product(self, product_id: str) -> str:
        return f"{self.tag}:product:{product_id}"

    def policy(self, name: str) -> str:
        return f"{self.tag}:policy:{name}"

    def rate(self, name: str) -> str:
        return f"{self.tag}:rate:{name}"

    def handover(self, conversation_key: str) -> str:
        return f"{self.tag}:handover:{conversation_key}"
