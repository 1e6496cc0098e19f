"""All settings, read once at start-up from the environment and an optional ``.env`` file.

Every name is listed in ``.env.example`` and in the README's configuration table.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.telegram.bot import SECRET_TOKEN_PATTERN
from adapters.webhook.callback_url import CallbackPolicy, parse_allow_list
from adapters.webhook.convert import GATEWAY_NAME
from adapters.wechat.sender import DEFAULT_API_BASE as WECHAT_API_BASE
from core.llm import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_PRICES,
    ModelPrice,
    parse_price_table,
)
from core.models import Priority
from core.priority import parse_priority_map
from core.templates import load_templates

# Secrets that authenticate requests from outside: shorter ones stop start-up off loopback.
MIN_SECRET_LENGTH = 16


class Settings(BaseSettings):
    # env_ignore_empty: "NAME=" (as in .env.example) means unset, not an empty value.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    # LLM provider
    holysheep_api_key: SecretStr | None = None
    holysheep_base_url: str = DEFAULT_BASE_URL
    holysheep_model: str = DEFAULT_MODEL
    holysheep_max_tokens: int = Field(500, ge=1, le=32_000)
    holysheep_temperature: float = Field(0.7, ge=0, le=2)
    holysheep_timeout_s: float = Field(10.0, gt=0)
    holysheep_max_attempts: int = Field(3, ge=1, le=10)
    holysheep_deadline_s: float = Field(30.0, gt=0)
    holysheep_backoff_base_s: float = Field(1.0, ge=0)
    holysheep_prices: str = ""  # JSON price table overrides, see core/llm.py
    # The provider's limits, shared by every process (unset: none), see core/provider.py
    holysheep_rpm: int | None = Field(None, ge=1)
    holysheep_tpm: int | None = Field(None, ge=1)
    holysheep_concurrency: int | None = Field(None, ge=1)
    # The cheaper model the degradation ladder switches to from level 2 (unset: no switch)
    holysheep_fallback_model: str | None = None

    # Peak mode, see core/peak.py
    peakdesk_first_response_s: float = Field(5.0, ge=0)  # 0 = never acknowledge
    peakdesk_target_p0_s: float = Field(30.0, gt=0)
    peakdesk_target_p1_s: float = Field(120.0, gt=0)
    peakdesk_target_p2_s: float = Field(600.0, gt=0)
    peakdesk_peak_mode: Literal["auto", "on", "off", "0", "1", "2", "3", "4"] = "auto"
    peakdesk_peak_max_tokens: int = Field(200, ge=1, le=32_000)
    peakdesk_token_budget_hour: int | None = Field(None, ge=1)
    peakdesk_token_budget_day: int | None = Field(None, ge=1)
    peakdesk_provider_failures: int = Field(5, ge=1, le=1000)  # in a row: the circuit opens
    peakdesk_provider_probe_s: float = Field(15.0, gt=0)  # then one probe call per period

    # State
    redis_url: str | None = None
    peakdesk_redis_cluster: bool = False  # REDIS_URL is a node of a Redis Cluster
    peakdesk_redis_prefix: str = Field("pd", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # Lanes the queue is split into (Redis Cluster spreads them over its masters); the same in
    # every process, and changed only with the queue empty. 1 = one hash slot (single Redis).
    peakdesk_shards: int = Field(1, ge=1, le=1024)

    # HTTP server
    peakdesk_host: str = "127.0.0.1"
    peakdesk_port: int = Field(8080, ge=0, le=65535)
    # After SIGTERM: /readyz answers 503 while requests are still served, then the listener closes
    peakdesk_shutdown_grace_s: float = Field(5.0, ge=0, le=600)
    # Requests of this process waiting for their answer at once (?wait=N); more get 503
    peakdesk_max_waiters: int = Field(500, ge=1, le=100_000)
    # Slow and idle clients (see bots/connections.py): a request's headers, then its body, must
    # arrive within these; an idle kept-alive connection closes after PEAKDESK_KEEPALIVE_S;
    # open connections of one process at most
    peakdesk_header_timeout_s: float = Field(10.0, gt=0, le=600)
    peakdesk_body_timeout_s: float = Field(10.0, gt=0, le=600)
    peakdesk_keepalive_s: float = Field(75.0, gt=0, le=3600)
    peakdesk_max_connections: int = Field(1000, ge=1, le=1_000_000)

    # Webhook channel: the default secret, and gateways' own ({"shop-a": "..."}; for a gateway
    # listed there the default is not accepted)
    webhook_secret: SecretStr | None = None
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    webhook_callback_url: str | None = Field(None, pattern=r"^https?://\S+$")
    webhook_callback_timeout_s: float = Field(10.0, gt=0)
    webhook_callback_max_attempts: int = Field(8, ge=1, le=50)
    # A reply whose channel stays unavailable is retried for at least this long (and at least
    # WEBHOOK_CALLBACK_MAX_ATTEMPTS times) before it is set aside
    peakdesk_delivery_retry_s: float = Field(900.0, ge=0, le=7 * 24 * 3600)
    # The callback URLs a message may name (host names, *.domains, URL prefixes; unset: any
    # public one), see adapters/webhook/callback_url.py
    webhook_callback_allow: str = ""

    # Telegram channel (on when TELEGRAM_BOT_TOKEN is set)
    telegram_bot_token: SecretStr | None = None  # "<bot id>:<secret>" from BotFather
    telegram_webhook_secret: SecretStr | None = None
    telegram_mode: Literal["webhook", "polling"] = "webhook"
    telegram_api_base: str | None = Field(None, pattern=r"^https?://\S+$")

    # Slack for support staff (on when SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and
    # SLACK_SUPPORT_CHANNEL are all set)
    slack_bot_token: SecretStr | None = None  # xoxb-...
    slack_signing_secret: SecretStr | None = None
    slack_support_channel: str | None = Field(None, pattern=r"^[CG][A-Z0-9]{2,}$")
    slack_api_base: str | None = Field(None, pattern=r"^https?://\S+$")
    peakdesk_escalate_after_failures: int = Field(2, ge=1, le=100)
    # A conversation is posted to Slack as a new hand-over at most once per this; 0 = no limit
    peakdesk_escalate_interval_s: int = Field(600, ge=0, le=7 * 24 * 3600)

    # WeChat Official Account (on when WECHAT_TOKEN, WECHAT_APP_ID and WECHAT_APP_SECRET are
    # all set; WECHAT_AES_KEY adds safe mode)
    wechat_token: SecretStr | None = None  # the "Token" of the account's server configuration
    wechat_app_id: str | None = Field(None, pattern=r"^wx[0-9a-f]{16}$")
    wechat_app_secret: SecretStr | None = None
    wechat_aes_key: SecretStr | None = None  # EncodingAESKey: 43 characters
    wechat_api_base: str = Field(WECHAT_API_BASE, pattern=r"^https?://\S+$")
    wechat_passive_reply_s: float = Field(4.0, gt=0, lt=5)

    # Shop knowledge: the merchant's store API, else the demo shop shipped with peakdesk
    store_api_base: str | None = Field(None, pattern=r"^https?://\S+$")
    store_api_token: SecretStr | None = None
    store_api_timeout_s: float = Field(3.0, gt=0, le=60)
    peakdesk_demo_identities: str | None = None  # JSON file: channel identity -> customer id
    peakdesk_templates: Literal["never", "fallback", "always"] = "fallback"
    peakdesk_template_file: str | None = None  # JSON: {"intent": {"en": "...", "zh": "..."}}

    # Queue and workers
    peakdesk_max_concurrent: int = Field(50, ge=1, le=10_000)
    # Messages held at most: 2 minutes of a 500x peak; about 1 KB of Redis memory each.
    peakdesk_max_queue: int = Field(1_000_000, ge=1)
    peakdesk_claim_idle_s: float = Field(30.0, gt=0)
    peakdesk_max_deliveries: int = Field(5, ge=1)
    peakdesk_retry_after_s: int = Field(5, ge=1, le=3600)
    peakdesk_dedupe_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    # How long each reply is kept (its text and route: a redelivered message is answered with
    # it, never a second time); keep it above the longest time a message may wait
    peakdesk_reply_ttl_s: int = Field(7 * 24 * 3600, ge=600)
    # Messages of one conversation arriving within this window (or while its previous turn is
    # answered) get one answer together; 0 = one answer per message
    peakdesk_burst_window_s: float = Field(1.5, ge=0, le=30)
    # Flood limits: messages one sender may send per window (a burst of that many, then one
    # every window/limit; 0 = none); messages a webhook gateway may post a minute (0 = none),
    # with per-gateway overrides as JSON, e.g. {"shop-a": 60000}
    peakdesk_flood_limit: int = Field(20, ge=0, le=100_000)
    peakdesk_flood_window_s: float = Field(60.0, gt=0, le=86_400)
    peakdesk_gateway_limit: int = Field(0, ge=0)
    peakdesk_gateway_limits: dict[str, int] = Field(default_factory=dict)
    # Messages of one conversation queued and not answered yet, at most: more are acknowledged
    # but not queued (one notice a flood window). A group chat answers one turn at a time, so
    # 100 unanswered is minutes behind already; also bounds what workers hold in memory.
    peakdesk_conversation_limit: int = Field(100, ge=1, le=100_000)

    # Conversation state
    peakdesk_history_turns: int = Field(20, ge=0, le=200)
    peakdesk_history_ttl_s: int = Field(3600, ge=1)
    peakdesk_catalogue_ttl_s: int = Field(24 * 3600, ge=1)
    peakdesk_response_cache_ttl_s: int = Field(3600, ge=1)
    peakdesk_system_prompt: str | None = None
    peakdesk_priority_map: str = ""  # e.g. "complaint=0,track_order=2"

    # Logging
    peakdesk_log_format: Literal["text", "json"] = "text"
    peakdesk_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Bearer token of POST /admin/forget (deleting a customer's data on any channel); unset = off
    peakdesk_admin_token: SecretStr | None = None
    # Log each message's text (redacted: emails, phones, card numbers masked) as it is answered
    peakdesk_log_message_text: bool = False

    def secret_values(self) -> list[str]:
        """Every configured secret's value: logs mask them wherever they turn up."""
        values = [reveal(v) for v in self.__dict__.values() if isinstance(v, SecretStr)]
        values += self.gateway_secrets.values()
        if self.redis_url and "@" in self.redis_url:  # redis://user:password@host
            values.append(self.redis_url.split("://", 1)[-1].rsplit("@", 1)[0])
        return [v for v in values if v]

    @field_validator("telegram_bot_token")
    @classmethod
    def _telegram_token_format(cls, value: SecretStr | None) -> SecretStr | None:
        token = value.get_secret_value() if value is not None else ""
        if token and not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ValueError("not a bot token: <bot id>:<secret> as BotFather gives it")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _gateway_secrets_named(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for gateway, secret in value.items():
            if not GATEWAY_NAME.fullmatch(gateway):
                raise ValueError(f"{gateway!r}: a gateway name is 1-32 of a-z, 0-9, - and _")
            if not secret.get_secret_value():
                raise ValueError(f"{gateway}: the secret is empty")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _telegram_secret_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not SECRET_TOKEN_PATTERN.fullmatch(value.get_secret_value()):
            raise ValueError("1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("wechat_aes_key")
    @classmethod
    def _wechat_aes_key_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9+/]{43}", value.get_secret_value()):
            raise ValueError("EncodingAESKey: 43 characters of A-Z, a-z, 0-9, + and /")
        return value

    @field_validator("webhook_callback_allow")
    @classmethod
    def _callback_allow_parses(cls, value: str) -> str:
        parse_allow_list(value)
        return value

    @field_validator("peakdesk_template_file")
    @classmethod
    def _templates_load(cls, value: str | None) -> str | None:
        if value:
            load_templates(value)
        return value

    @field_validator("holysheep_prices")
    @classmethod
    def _prices_parse(cls, value: str) -> str:
        if value:
            parse_price_table(value)
        return value

    @field_validator("peakdesk_priority_map")
    @classmethod
    def _priority_map_parses(cls, value: str) -> str:
        if value:
            parse_priority_map(value)
        return value

    @property
    def prices(self) -> dict[str, ModelPrice]:
        """The built-in price table with the ``HOLYSHEEP_PRICES`` overrides on top."""
        overrides = parse_price_table(self.holysheep_prices) if self.holysheep_prices else {}
        return {**DEFAULT_PRICES, **overrides}

    @property
    def priority_overrides(self) -> dict[str, Priority]:
        return parse_priority_map(self.peakdesk_priority_map) if self.peakdesk_priority_map else {}

    @property
    def gateway_secrets(self) -> dict[str, str]:
        """WEBHOOK_SECRETS with the values revealed."""
        return {name: secret.get_secret_value() for name, secret in self.webhook_secrets.items()}

    def short_secrets(self) -> list[str]:
        """The names of the secrets set shorter than MIN_SECRET_LENGTH (guessable)."""
        named: dict[str, list[str | None]] = {
            "WEBHOOK_SECRET": [reveal(self.webhook_secret)],
            "WEBHOOK_SECRETS": list(self.gateway_secrets.values()),
            "TELEGRAM_WEBHOOK_SECRET": [reveal(self.telegram_webhook_secret)],
            "PEAKDESK_ADMIN_TOKEN": [reveal(self.peakdesk_admin_token)],
        }
        return [
            name
            for name, values in named.items()
            if any(v is not None and len(v) < MIN_SECRET_LENGTH for v in values)
        ]

    @property
    def callback_policy(self) -> CallbackPolicy:
        """Which callback URLs replies are posted to: WEBHOOK_CALLBACK_URL and
        WEBHOOK_CALLBACK_ALLOW as configured, and loopback ones only while on loopback."""
        return CallbackPolicy(
            configured=self.webhook_callback_url,
            allow=parse_allow_list(self.webhook_callback_allow),
            loopback=self.on_loopback,
        )

    @property
    def slack_settings(self) -> tuple[str | None, str | None, str | None]:
        """SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_SUPPORT_CHANNEL (None when unset)."""
        return (
            reveal(self.slack_bot_token),
            reveal(self.slack_signing_secret),
            self.slack_support_channel,
        )

    @property
    def slack_enabled(self) -> bool:
        return all(self.slack_settings)

    @property
    def wechat_settings(self) -> tuple[str | None, str | None, str | None]:
        """WECHAT_TOKEN, WECHAT_APP_ID, WECHAT_APP_SECRET (None when unset)."""
        return (
            reveal(self.wechat_token),
            self.wechat_app_id,
            reveal(self.wechat_app_secret),
        )

    @property
    def wechat_enabled(self) -> bool:
        return all(self.wechat_settings)

    @property
    def on_loopback(self) -> bool:
        """Whether the server listens on a loopback address only (unsigned webhooks allowed)."""
        host = self.peakdesk_host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def reveal(value: SecretStr | None) -> str | None:
    """The secret's value, or None when it is unset or empty."""
    return (value.get_secret_value() or None) if value is not None else None


def describe_error(exc: Exception) -> str:
    """One line naming the variable that is wrong, for start-up failures."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        return f"invalid setting {name}: {error['msg']}"
    # pydantic-settings' SettingsError for a value it could not decode (a JSON setting that is
    # no JSON) names the field in lower case
    field = re.search(r'field "(\w+)"', str(exc))
    if field is not None:
        return f"invalid setting {field.group(1).upper()}: not valid JSON"
    return f"invalid settings: {exc}"
