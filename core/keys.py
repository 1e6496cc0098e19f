"""Redis key layout, in one place.

Keys carry a hash tag, so that the keys one Lua script or transaction touches live in one hash
slot on Redis Cluster:

- With ``shards`` = 1 (the default, and what a single Redis server needs) every key carries
  ``{<prefix>}``.
- With ``shards`` = N (``PEAKDESK_SHARDS``, for Redis Cluster) the queue is split into N lanes,
  ``{<prefix>:0}`` to ``{<prefix>:N-1}``, which the cluster spreads over its masters. A
  conversation belongs to one lane (CRC32 of its key): its messages' streams, burst list,
  turn lock, history, replies, hand-over record and the outbox that carries its replies all
  share that lane's slot, so each script stays in one slot. A ticket names its lane
  (``T...-3``), so a reply can be found from the ticket alone. What all processes share
  whatever the conversation (provider limits, token budgets, the peak mode, the answer caches,
  the shop cache, the day's LLM costs) stays under ``{<prefix>}``.

Methods keyed by a conversation or a ticket find their lane themselves. The others that live
in a lane (the streams, the outbox, dedupe keys...) must be asked of a lane's view
(:meth:`Keys.for_conversation`, :meth:`Keys.for_ticket`, :attr:`Keys.lanes`); asked of the
root with several lanes they raise, so a missed lane cannot go unnoticed.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

PRIORITIES = (0, 1, 2)


@functools.lru_cache(maxsize=4096)
def _lane(prefix: str, shards: int, lane: int) -> Keys:
    return Keys(prefix, shards, lane)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "pd"
    shards: int = 1
    lane: int | None = None  # set on a lane's view (with shards > 1)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError("shards: 1 or more")

    @property
    def tag(self) -> str:
        """The hash tag of what every process shares (and of everything with one lane)."""
        return "{" + self.prefix + "}"

    @property
    def lanes(self) -> tuple[Keys, ...]:
        """Every lane's view (just this one with shards = 1)."""
        if self.shards == 1:
            return (self,)
        return tuple(_lane(self.prefix, self.shards, n) for n in range(self.shards))

    def for_conversation(self, conversation_key: str) -> Keys:
        """The view of the conversation's lane."""
        if self.shards == 1:
            return self
        lane = zlib.crc32(conversation_key.encode()) % self.shards
        return _lane(self.prefix, self.shards, lane)

    def ticket_suffix(self, conversation_key: str) -> str:
        """What a new ticket of the conversation ends with: its lane (nothing with one)."""
        if self.shards == 1:
            return ""
        return f"-{self.for_conversation(conversation_key).lane}"

    def for_ticket(self, ticket_id: str) -> Keys:
        """The view of the lane a ticket names (lane 0 for a ticket that names none)."""
        if self.shards == 1:
            return self
        _, dash, lane = ticket_id.rpartition("-")
        number = int(lane) if dash and lane.isdigit() else 0
        return _lane(self.prefix, self.shards, number % self.shards)

    @property
    def _lane_tag(self) -> str:
        if self.shards == 1:
            return self.tag
        if self.lane is None:
            raise LookupError(
                "a lane's key asked of the root Keys: use for_conversation(), for_ticket() or lanes"
            )
        return "{" + f"{self.prefix}:{self.lane}" + "}"

    def _conversation_tag(self, conversation_key: str) -> str:
        return self.for_conversation(conversation_key)._lane_tag

    def _ticket_tag(self, ticket_id: str) -> str:
        return self.for_ticket(ticket_id)._lane_tag

    def stream(self, priority: int) -> str:
        return f"{self._lane_tag}:q:{priority}"

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.stream(p) for p in PRIORITIES)

    @property
    def dead_letters(self) -> str:
        return f"{self._lane_tag}:dead"

    @property
    def outbox(self) -> str:
        return f"{self._lane_tag}:out"

    @property
    def dead_deliveries(self) -> str:
        return f"{self._lane_tag}:out:dead"

    def seen(self, dedupe_key: str) -> str:
        return f"{self._lane_tag}:seen:{dedupe_key}"

    def reply(self, ticket_id: str) -> str:
        return self.for_ticket(ticket_id).reply_prefix + ticket_id

    @property
    def reply_prefix(self) -> str:
        """What the lane's reply keys start with (a script builds them from tickets)."""
        return f"{self._lane_tag}:reply:"

    def delivery_claim(self, ticket_id: str) -> str:
        return f"{self._lane_tag}:claim:{ticket_id}"

    def history(self, conversation_key: str) -> str:
        return f"{self._conversation_tag(conversation_key)}:hist:{conversation_key}"

    def context(self, conversation_key: str) -> str:
        return f"{self._conversation_tag(conversation_key)}:ctx:{conversation_key}"

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

    def signature_seen(self, digest: str) -> str:
        """Set while a webhook signature (its digest) is fresh and was used: it is used once."""
        return f"{self.tag}:sig:{digest}"

    def flood(self, sender_key: str) -> str:
        """The sender's flood limit state (GCRA: when its next message is due)."""
        return f"{self._lane_tag}:flood:{sender_key}"

    def flood_notice(self, sender_key: str) -> str:
        """Set while the sender has had its flood notice this window."""
        return f"{self._lane_tag}:flood:notice:{sender_key}"

    def crowded_notice(self, conversation_key: str) -> str:
        """Set while the conversation has had its notice of being over the conversation
        limit this window."""
        return f"{self._conversation_tag(conversation_key)}:crowded:{conversation_key}"

    def handover(self, conversation_key: str) -> str:
        return self.for_conversation(conversation_key).handover_prefix + conversation_key

    @property
    def handover_prefix(self) -> str:
        """What the lane's hand-over records start with (a script builds them from the
        conversations of the open set)."""
        return f"{self._lane_tag}:handover:"

    def escalated(self, conversation_key: str) -> str:
        """Set for a while after the conversation was posted to the desk as a new hand-over
        (``PEAKDESK_ESCALATE_INTERVAL_S``)."""
        return f"{self._conversation_tag(conversation_key)}:escalated:{conversation_key}"

    @property
    def handovers_open(self) -> str:
        """Sorted set of the conversations waiting for or owned by a person."""
        return f"{self._lane_tag}:handovers:open"

    @property
    def handover_pickup(self) -> str:
        """How long people took to take hand-overs lately (for the customer's estimate)."""
        return f"{self._lane_tag}:handovers:pickup"

    def handover_ticket(self, ticket_id: str) -> str:
        return f"{self._ticket_tag(ticket_id)}:handover:ticket:{ticket_id}"

    def handover_thread(self, thread: str) -> str:
        return f"{self.tag}:handover:thread:{thread}"

    def burst(self, conversation_key: str) -> str:
        """The conversation's messages not answered yet, in arrival order (burst merge)."""
        return f"{self._conversation_tag(conversation_key)}:burst:{conversation_key}"

    def turn_lock(self, conversation_key: str) -> str:
        """Held by the one worker answering the conversation, in any process."""
        return f"{self._conversation_tag(conversation_key)}:turn:{conversation_key}"

    def acked(self, conversation_key: str) -> str:
        """Set while the conversation has an acknowledgement out and its answer pending
        (cleared by the answer, or when people take the messages over)."""
        return f"{self._conversation_tag(conversation_key)}:acked:{conversation_key}"

    @property
    def peak_mode(self) -> str:
        """The degradation ladder forced by staff (``/peakdesk peak``): auto, on, off, 0-4."""
        return f"{self.tag}:peak:mode"

    def budget(self, window: str) -> str:
        """Tokens spent in one budget window: ``h<unix hour>`` or ``d<YYYYMMDD>``."""
        return f"{self.tag}:budget:{window}"

    def held(self, ticket_id: str) -> str:
        """Marks a message passed to people instead of answered (processed once)."""
        return f"{self._ticket_tag(ticket_id)}:held:{ticket_id}"

    def staff_message(self, reply_id: str) -> str:
        return f"{self._lane_tag}:staffmsg:{reply_id}"

    def failures(self, conversation_key: str) -> str:
        return f"{self._conversation_tag(conversation_key)}:fails:{conversation_key}"

    def desk_lock(self, conversation_key: str) -> str:
        return f"{self._conversation_tag(conversation_key)}:desk:lock:{conversation_key}"

    def event_seen(self, channel: str, event_id: str) -> str:
        """Dedupe key of a platform event (Slack's event_id...)."""
        return f"{self.tag}:event:{channel}:{event_id}"

    def stats_day(self, day: str) -> str:
        """Per-day counters; ``day`` is YYYYMMDD (UTC). A lane's view: the answers per source
        and drained entries its scripts count; the root: what is counted outside them (LLM
        calls, cost). With one lane both are one key; readers add the lanes up."""
        return f"{self.tag if self.lane is None else self._lane_tag}:stats:{day}"

    def stats_minute(self, minute: int) -> str:
        return f"{self.tag}:stats:min:{minute}"

    def shop(self, kind: str, name: str) -> str:
        """The store cache: ``kind`` is order, orders, product, search, policy or identity."""
        return f"{self.tag}:shop:{kind}:{name}"

    def wechat_token(self, app_id: str) -> str:
        """The Official Account's access token, shared by every process until it expires."""
        return f"{self.tag}:wechat:token:{app_id}"

    def wechat_nonce(self, signature: str) -> str:
        """Set while a signed WeChat request (its timestamp and nonce) counts as used."""
        return f"{self.tag}:wechat:nonce:{signature}"

    def provider(self, name: str) -> str:
        """The LLM provider's shared limits: rpm, tpm, leases, factor, cut_at."""
        return f"{self.tag}:provider:{name}"

    def waits(self, priority: int) -> str:
        """The latest queue waits of one priority, in milliseconds (newest first)."""
        return f"{self.tag}:waits:{priority}"
