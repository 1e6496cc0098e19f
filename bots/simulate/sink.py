"""The gateway's callback endpoint: every reply peakdesk delivers, with the time it arrived.

It answers 200 at once (a healthy gateway) and records what the report needs of each callback:
which messages it answers (``message_ids``, or ``[message_id]`` from a peakdesk that does not
merge bursts), its ``reply_id`` (to find duplicates and redeliveries) and its ``source``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

ACK = "ack"


@dataclass(frozen=True, slots=True)
class ReceivedReply:
    at: float  # seconds from the start of the run
    conversation: str
    message_ids: tuple[str, ...]
    reply_id: str
    source: str
    priority: int | None

    @property
    def is_ack(self) -> bool:
        """An acknowledgement, not an answer: it does not complete any message."""
        return self.source == ACK


def parse_reply(body: Any, at: float) -> ReceivedReply | None:
    """The reply of a callback body, or None when the body is not a reply we can use."""
    if not isinstance(body, dict):
        return None
    message_id = body.get("message_id")
    ids = body.get("message_ids")
    if not isinstance(ids, list) or not ids:
        ids = [message_id]
    if not all(isinstance(i, str) for i in ids):
        return None
    priority = body.get("priority")
    reply_id = body.get("reply_id") or body.get("ticket_id")
    return ReceivedReply(
        at=at,
        conversation=str(body.get("conversation_id", "")),
        message_ids=tuple(ids),
        reply_id=str(reply_id),
        source=str(body.get("source", "")),
        priority=priority if isinstance(priority, int) else None,
    )


class CallbackSink:
    """``POST /callback``: records replies; ``on_reply`` sees each one as it arrives."""

    def __init__(
        self,
        clock: Callable[[], float],
        on_reply: Callable[[ReceivedReply], None] | None = None,
    ) -> None:
        self.clock = clock
        self.on_reply = on_reply
        self.replies: list[ReceivedReply] = []
        self.malformed = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/callback", self._callback)
        return app

    async def _callback(self, request: web.Request) -> web.Response:
        at = self.clock()
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        reply = parse_reply(body, at)
        if reply is None:
            self.malformed += 1
            return web.json_response({"ok": True})  # a gateway would not make it retry
        self.replies.append(reply)
        if self.on_reply is not None:
            self.on_reply(reply)
        return web.json_response({"ok": True})
