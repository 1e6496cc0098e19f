"""Wires one process together from the settings: store, queue, LLM, handler, workers, channels."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.app import SlackApp
from adapters.slack.desk import SlackDesk
from adapters.store.demo import DemoShop
from adapters.store.http import HttpShop
from adapters.telegram.bot import TelegramSetupError, bot_identity, make_bot
from adapters.telegram.convert import CHANNEL as TELEGRAM
from adapters.telegram.convert import BotIdentity
from adapters.telegram.ingress import TelegramIngress
from adapters.telegram.polling import TelegramPoller
from adapters.telegram.sender import TelegramReplySender
from adapters.webhook.convert import CHANNEL as WEBHOOK
from adapters.webhook.ingress import WebhookIngress
from adapters.webhook.replay import SignatureMemory
from adapters.webhook.sender import CallbackSender, checked_session
from adapters.webhook.signing import GatewaySecrets
from adapters.wechat.crypto import SafeMode
from adapters.wechat.freshness import PushFreshness
from adapters.wechat.ingress import CHANNEL as WECHAT
from adapters.wechat.ingress import WeChatIngress
from adapters.wechat.sender import WeChatSender
from bots.admin import AdminApi
from bots.http import build_app
from bots.settings import Settings, reveal
from core.aio import wait_event
from core.circuit import CircuitBreaker
from core.errors import StoreUnavailable
from core.handler import DEFAULT_SYSTEM_PROMPT, ReplyHandler
from core.handover import ConversationForgetter, HandoverDesk
from core.keys import Keys
from core.ledger import Ledger
from core.llm import HolySheepClient
from core.metrics import Metrics
from core.outbox import DeskSender, Outbox, ReplySender
from core.peak import Budget, PeakMonitor
from core.priority import PriorityDetector
from core.provider import ProviderLimits
from core.queue import FloodLimit, PriorityQueue
from core.ratelimit import RateLimiter
from core.shop import CachedShop, Shop
from core.state import ConversationState
from core.store import connect_redis
from core.templates import InstantAnswers, TemplateAnswers, load_templates
from core.worker import Presence, Worker, consumer_name

log = logging.getLogger("peakdesk.runtime")


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` LLM slots shared by ``parts`` worker loops of one process (each gets >= 1)."""
    return [max(1, total // parts + (i < total % parts)) for i in range(parts)]


class Runtime:
    """Everything one peakdesk process runs. ``workers=0`` makes a gateway-only process."""

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int = 1,
        redis: Redis | None = None,
        ingest: bool = True,
    ) -> None:
        self.settings = s = settings
        self._owns_redis = redis is None
        self.redis = (
            redis
            if redis is not None
            else connect_redis(s.redis_url, cluster=s.peakdesk_redis_cluster)
        )
        self.keys = Keys(s.peakdesk_redis_prefix, s.peakdesk_shards)
        self.metrics = Metrics()
        self.queue = PriorityQueue(
            self.redis,
            self.keys,
            max_queue=s.peakdesk_max_queue,
            dedupe_ttl_s=s.peakdesk_dedupe_ttl_s,
            reply_ttl_s=s.peakdesk_reply_ttl_s,
            retry_after_s=s.peakdesk_retry_after_s,
            merge_bursts=s.peakdesk_burst_window_s > 0,
            flood=FloodLimit(s.peakdesk_flood_limit, s.peakdesk_flood_window_s),
            conversation_limit=s.peakdesk_conversation_limit,
        )
        self.state = ConversationState(
            self.redis,
            self.keys,
            history_turns=s.peakdesk_history_turns,
            history_ttl_s=s.peakdesk_history_ttl_s,
            catalogue_ttl_s=s.peakdesk_catalogue_ttl_s,
            response_ttl_s=s.peakdesk_response_cache_ttl_s,
        )
        self.detector = PriorityDetector(s.priority_overrides)
        self.ledger = Ledger(self.redis, self.keys)
        self.peak = PeakMonitor(
            self.redis,
            self.keys,
            first_response_s=s.peakdesk_first_response_s,
            targets_s=(s.peakdesk_target_p0_s, s.peakdesk_target_p1_s, s.peakdesk_target_p2_s),
            mode=s.peakdesk_peak_mode,
            slots=s.peakdesk_max_concurrent,
            budget=Budget(s.peakdesk_token_budget_hour, s.peakdesk_token_budget_day),
            lean_max_tokens=min(s.peakdesk_peak_max_tokens, s.holysheep_max_tokens),
            fallback_model=s.holysheep_fallback_model,
            metrics=self.metrics,
            burst_window_s=s.peakdesk_burst_window_s,
        )
        self.queue.acks = self.peak
        self.desk = HandoverDesk(
            self.redis,
            self.keys,
            staffed=s.slack_enabled,
            escalate_interval_s=s.peakdesk_escalate_interval_s,
        )
        self.forgetter = ConversationForgetter(self.state, self.desk)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.llm = HolySheepClient(
            api_key=reveal(s.holysheep_api_key),
            base_url=s.holysheep_base_url,
            model=s.holysheep_model,
            max_tokens=s.holysheep_max_tokens,
            temperature=s.holysheep_temperature,
            attempt_timeout=s.holysheep_timeout_s,
            max_attempts=s.holysheep_max_attempts,
            deadline=s.holysheep_deadline_s,
            backoff_base=s.holysheep_backoff_base_s,
            prices=s.prices,
            session=self.http,
            limits=ProviderLimits(
                self.redis,
                self.keys,
                rpm=s.holysheep_rpm,
                tpm=s.holysheep_tpm,
                concurrency=s.holysheep_concurrency,
            ),
        )
        self.shop = CachedShop(
            self._store(), self.redis, self.keys, catalogue_ttl_s=s.peakdesk_catalogue_ttl_s
        )
        templates = TemplateAnswers(self.shop, load_templates(s.peakdesk_template_file))
        if s.peakdesk_templates != "never" and self.queue.merge_bursts:
            # Needs the burst lists: an instant answer must not overtake a queued message.
            self.queue.instant = InstantAnswers(templates, self.detector, self.peak, self.state)
        self.handler = ReplyHandler(
            self.llm,
            self.state,
            self.metrics,
            system_prompt=s.peakdesk_system_prompt or DEFAULT_SYSTEM_PROMPT,
            model=s.holysheep_model,
            detector=self.detector,
            desk=self.desk,
            ledger=self.ledger,
            escalate_after_failures=s.peakdesk_escalate_after_failures,
            shop=self.shop,
            templates=templates,
            template_mode=s.peakdesk_templates,
            peak=self.peak,
            breaker=CircuitBreaker(s.peakdesk_provider_failures, s.peakdesk_provider_probe_s),
        )
        secrets = GatewaySecrets(reveal(s.webhook_secret), s.gateway_secrets)
        self.callbacks = s.callback_policy
        # Callbacks to URLs the operator did not name: a connector of their own.
        self.callback_http = checked_session(self.callbacks)
        senders: dict[str, ReplySender] = {
            WEBHOOK: CallbackSender(
                self.http,
                secrets,
                timeout_s=s.webhook_callback_timeout_s,
                policy=self.callbacks,
                checked=self.callback_http,
            )
        }
        presence: dict[str, Presence] = {}
        self.telegram: TelegramChannel | None = None
        token = reveal(s.telegram_bot_token)
        if token is not None:
            self.telegram = TelegramChannel(self, token, polling=ingest)
            senders[TELEGRAM] = presence[TELEGRAM] = self.telegram.sender
        if s.wechat_enabled:
            _, app_id, app_secret = s.wechat_settings
            assert app_id and app_secret
            senders[WECHAT] = WeChatSender(
                self.http,
                self.redis,
                self.keys,
                app_id=app_id,
                app_secret=app_secret,
                api_base=s.wechat_api_base,
            )
        self.slack: SlackChannel | None = SlackChannel(self) if s.slack_enabled else None
        self.outbox = Outbox(
            self.redis,
            self.keys,
            senders,
            desk=self.slack.desk if self.slack is not None else None,
            consumer=consumer_name("outbox"),
            metrics=self.metrics,
            max_attempts=s.webhook_callback_max_attempts,
            retry_for_s=s.peakdesk_delivery_retry_s,
            claim_idle_s=s.peakdesk_claim_idle_s,
            max_waiters=s.peakdesk_max_waiters,
        )
        self.ingress = WebhookIngress(
            self.queue,
            self.detector,
            self.outbox,
            self.metrics,
            secrets=secrets,
            allow_unsigned=s.on_loopback,
            default_callback_url=s.webhook_callback_url,
            retry_after_s=s.peakdesk_retry_after_s,
            limiter=RateLimiter(self.redis, self.keys),
            gateway_limit=s.peakdesk_gateway_limit,
            gateway_limits=s.peakdesk_gateway_limits,
            forgetter=self.forgetter,
            replays=SignatureMemory(self.redis, self.keys),
            callback_policy=self.callbacks,
        )
        self.wechat = self._wechat_ingress() if s.wechat_enabled else None
        self.workers = [
            Worker(
                self.queue,
                self.handler,
                self.metrics,
                notifier=self.outbox,
                presence=presence,
                waits=self.ledger,
                max_concurrent=share,
                claim_idle_s=s.peakdesk_claim_idle_s,
                max_deliveries=s.peakdesk_max_deliveries,
                burst_window_s=s.peakdesk_burst_window_s,
                log_text=s.peakdesk_log_message_text,
            )
            for share in split_evenly(s.peakdesk_max_concurrent, workers)
        ]
        self.stopping = asyncio.Event()
        # Set on SIGTERM before ``stopping``: /readyz answers 503 while requests are still served.
        self.draining = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _wechat_ingress(self) -> WeChatIngress:
        s = self.settings
        token, app_id, _ = s.wechat_settings
        aes_key = reveal(s.wechat_aes_key)
        assert token and app_id
        return WeChatIngress(
            self.queue,
            self.detector,
            self.outbox,
            self.metrics,
            token=token,
            freshness=PushFreshness(self.redis, self.keys),
            safe_mode=SafeMode(token, aes_key, app_id) if aes_key else None,
            passive_reply_s=s.wechat_passive_reply_s,
            acks=self.peak,
        )

    def _store(self) -> Shop:
        """The merchant's store API when STORE_API_BASE is set, else the demo shop."""
        s = self.settings
        if s.store_api_base:
            return HttpShop(
                s.store_api_base,
                reveal(s.store_api_token),
                session=self.http,
                timeout_s=s.store_api_timeout_s,
                breaker=CircuitBreaker(),
            )
        return DemoShop(identities_path=s.peakdesk_demo_identities)

    def app(self) -> web.Application:
        routes = self.ingress.routes()
        if self.telegram is not None and self.settings.telegram_mode == "webhook":
            routes += self.telegram.ingress.routes()
        if self.slack is not None:
            routes += self.slack.app.routes()
        if self.wechat is not None:
            routes += self.wechat.routes()
        routes += AdminApi(
            reveal(self.settings.peakdesk_admin_token), self.forgetter, self._accounts
        ).routes()
        return self._build_app(routes)

    def _accounts(self) -> dict[str, str]:
        """The account of each channel whose account this process knows (for /admin/forget)."""
        if self.telegram is not None and self.telegram.ingress.bot.id:
            return {"telegram": str(self.telegram.ingress.bot.id)}
        return {}

    def ops_app(self) -> web.Application:
        """Health, readiness and metrics only: what a worker process serves to be scraped."""
        return self._build_app([])

    def _build_app(self, routes: list[web.RouteDef]) -> web.Application:
        return build_app(
            routes, self.redis, self.queue, self.metrics, draining=self.draining, peak=self.peak
        )

    async def start(self) -> None:
        """Create the consumer groups and start the workers and the outbox (if any workers).

        A Redis outage at start-up is not fatal: /readyz reports it, ingest answers 503 and
        the workers keep retrying until Redis is back.
        """
        try:
            await self.queue.ensure_groups()
        except StoreUnavailable:
            log.warning("Redis is not reachable at start-up; retrying in the background")
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.peak.run(self.stopping)))
        if self.telegram is not None:
            await self.telegram.start(self.stopping, self._tasks)
        if self.workers:
            self._tasks.append(loop.create_task(self.outbox.run(self.stopping)))
            self._tasks.append(loop.create_task(self.ledger.run(self.stopping)))
        self._tasks += [loop.create_task(w.run(self.stopping)) for w in self.workers]

    async def stop(self) -> None:
        """Stop taking work, let in-flight work finish (or stay pending for others), close."""
        self.stopping.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.telegram is not None:
            await self.telegram.bot.session.close()
        await self.llm.aclose()
        await self.http.close()
        await self.callback_http.close()
        if self._owns_redis:
            with contextlib.suppress(Exception):
                await self.redis.aclose()


class TelegramChannel:
    """The Telegram bot of one process: its client, sender, ingress and (maybe) poller."""

    def __init__(self, runtime: Runtime, token: str, *, polling: bool) -> None:
        s = runtime.settings
        self.bot = make_bot(token, s.telegram_api_base)
        bot_id = int(token.split(":", 1)[0])  # a bot token starts with the bot's id
        self.sender = TelegramReplySender(
            self.bot,
            RateLimiter(runtime.redis, runtime.keys),
            runtime.redis,
            runtime.keys,
            runtime.metrics,
            bot_id=bot_id,
        )
        self.ingress = TelegramIngress(
            runtime.queue,
            runtime.detector,
            runtime.state,
            runtime.desk,
            runtime.metrics,
            bot_id=bot_id,
            bot_username=None,
            secret=reveal(s.telegram_webhook_secret),
            retry_after_s=s.peakdesk_retry_after_s,
        )
        # Telegram allows one getUpdates consumer per bot: only an ingesting process polls.
        self.poller = (
            TelegramPoller(self.bot, self.ingress)
            if polling and s.telegram_mode == "polling"
            else None
        )

    async def start(self, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
        """Learn the bot's @username (group mentions), then start polling if configured."""
        loop = asyncio.get_running_loop()
        if not await self._learn_identity():
            tasks.append(loop.create_task(self._learn_identity_later(stop)))
        if self.poller is not None:
            tasks.append(loop.create_task(self.poller.run(stop)))

    async def _learn_identity(self) -> bool:
        try:
            async with asyncio.timeout(10):
                bot_id, username = await bot_identity(self.bot)
        except (TelegramSetupError, TimeoutError) as exc:
            log.warning("telegram: getMe failed (%s); @mentions not recognised yet", exc)
            return False
        self.ingress.bot = BotIdentity(bot_id, username)
        return True

    async def _learn_identity_later(self, stop: asyncio.Event, every_s: float = 30.0) -> None:
        while not stop.is_set():
            await wait_event(stop, every_s)
            if not stop.is_set() and await self._learn_identity():
                return


class SlackChannel:
    """The support staff's Slack: the Bolt app (inbound) and the desk sender (outbound)."""

    def __init__(self, runtime: Runtime) -> None:
        s = runtime.settings
        token, signing_secret, channel = s.slack_settings
        assert token and signing_secret and channel
        base_url = s.slack_api_base.rstrip("/") + "/" if s.slack_api_base else None
        self.client = AsyncWebClient(
            token=token,
            base_url=base_url or AsyncWebClient.BASE_URL,
            session=runtime.http,  # pooled connections, closed with the runtime
        )
        self.desk: DeskSender = SlackDesk(
            self.client,
            runtime.desk,
            RateLimiter(runtime.redis, runtime.keys),
            runtime.redis,
            runtime.keys,
            channel=channel,
        )
        self.app = SlackApp(
            self.client,
            signing_secret=signing_secret,
            support_channel=channel,
            desk=runtime.desk,
            ledger=runtime.ledger,
            queue=runtime.queue,
            state=runtime.state,
            metrics=runtime.metrics,
            peak=runtime.peak,
        )
