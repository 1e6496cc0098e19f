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

    def flight(self, digest: str) -> str:
        """Held by the process computing a shared answer (single flight)."""
        return f"{self.tag}:flight:{digest}"

    def product(self, product_id: str) -> str:
        return f"{self.tag}:product:{product_id}"

    def policy(self, name: str) -> str:
        return f"{self.tag}:policy:{name}"

    def rate(self, name: str) -> str:
        return f"{self.tag}:rate:{name}"

    def flood(self, sender_key: str) -> str:
        """The sender's flood limit state (GCRA: when its next message is due)."""
        return f"{self.tag}:flood:{sender_key}"

    def flood_notice(self, sender_key: str) -> str:
        """Set while the sender has had its flood notice this window."""
        return f"{self.tag}:flood:notice:{sender_key}"

    def handover(self, conversation_key: str) -> str:
        return f"{self.tag}:handover:{conversation_key}"

    @property
    def handovers_open(self) -> str:
        """Sorted set of the conversations waiting for or owned by a person."""
        return f"{self.tag}:handovers:open"

    @property
    def handover_pickup(self) -> str:
        """How long people took to take hand-overs lately (for the customer's estimate)."""
        return f"{self.tag}:handovers:pickup"

    def handover_ticket(self, ticket_id: str) -> str:
        return f"{self.tag}:handover:ticket:{ticket_id}"

    def handover_thread(self, thread: str) -> str:
        return f"{self.tag}:handover:thread:{thread}"

    def burst(self, conversation_key: str) -> str:
        """The conversation's messages not answered yet, in arrival order (burst merge)."""
        return f"{self.tag}:burst:{conversation_key}"

    def turn_lock(self, conversation_key: str) -> str:
        """Held by the one worker answering the conversation, in any process."""
        return f"{self.tag}:turn:{conversation_key}"

    def acked(self, conversation_key: str) -> str:
        """Set while the conversation has an acknowledgement out and its answer pending
        (cleared by the answer, or when people take the messages over)."""
        return f"{self.tag}:acked:{conversation_key}"

    @property
    def peak_mode(self) -> str:
        """The degradation ladder forced by staff (``/peakdesk peak``): auto, on, off, 0-4."""
        return f"{self.tag}:peak:mode"

    def budget(self, window: str) -> str:
        """Tokens spent in one budget window: ``h<unix hour>`` or ``d<YYYYMMDD>``."""
        return f"{self.tag}:budget:{window}"

    def held(self, ticket_id: str) -> str:
        """Marks a message passed to people instead of answered (processed once)."""
        return f"{self.tag}:held:{ticket_id}"

    def staff_message(self, reply_id: str) -> str:
        return f"{self.tag}:staffmsg:{reply_id}"

    def failures(self, conversation_key: str) -> str:
        return f"{self.tag}:fails:{conversation_key}"

    def desk_lock(self, conversation_key: str) -> str:
        return f"{self.tag}:desk:lock:{conversation_key}"

    def event_seen(self, channel: str, event_id: str) -> str:
        """Dedupe key of a platform event (Slack's event_id...)."""
        return f"{self.tag}:event:{channel}:{event_id}"

    def stats_day(self, day: str) -> str:
        """Per-day counters (answers per source, LLM calls, cost); ``day`` is YYYYMMDD (UTC)."""
        return f"{self.tag}:stats:{day}"

    def stats_minute(self, minute: int) -> str:
        return f"{self.tag}:stats:min:{minute}"

    def shop(self, kind: str, name: str) -> str:
        """The store cache: ``kind`` is order, orders, product, search, policy or identity."""
        return f"{self.tag}:shop:{kind}:{name}"

    def wechat_token(self, app_id: str) -> str:
        """The Official Account's access token, shared by every process until it expires."""
        return f"{self.tag}:wechat:token:{app_id}"

    def provider(self, name: str) -> str:
        """The LLM provider's shared limits: rpm, tpm, leases, factor, cut_at."""
        return f"{self.tag}:provider:{name}"

    def waits(self, priority: int) -> str:
        """The latest queue waits of one priority, in milliseconds (newest first)."""
        return f"{self.tag}:waits:{priority}"
