"""Settings: names as documented, overrides merged, bad values named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from bots.runtime import split_evenly
from bots.settings import Settings, describe_error
from core.models import Priority


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "HOLYSHEEP_API_KEY", "WEBHOOK_SECRET", "PEAKDESK_HOST"):
        monkeypatch.delenv(name, raising=False)
    s = settings()
    assert (s.peakdesk_host, s.peakdesk_port) == ("127.0.0.1", 8080)
    assert (s.peakdesk_max_concurrent, s.peakdesk_max_queue) == (50, 1_000_000)
    assert (s.peakdesk_claim_idle_s, s.peakdesk_max_deliveries) == (30.0, 5)
    assert s.holysheep_base_url == "https://api.holysheep.ai/v1"
    assert s.holysheep_model == "deepseek-v3.2" and s.redis_url is None and s.on_loopback


def test_environment_variables_are_read_by_their_documented_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PEAKDESK_MAX_QUEUE", "1234")
    monkeypatch.setenv("PEAKDESK_CLAIM_IDLE_S", "7.5")
    monkeypatch.setenv("PEAKDESK_MAX_DELIVERIES", "9")
    monkeypatch.setenv("PEAKDESK_PRIORITY_MAP", "complaint=0")
    s = settings()
    assert (s.peakdesk_max_queue, s.peakdesk_claim_idle_s, s.peakdesk_max_deliveries) == (
        1234,
        7.5,
        9,
    )
    assert s.priority_overrides == {"complaint": Priority.URGENT}


def test_price_overrides_are_merged_over_the_built_in_table() -> None:
    s = settings(holysheep_prices='{"cheap-model": {"input": 0.1, "output": 0.2}}')
    assert set(s.prices) >= {"deepseek-v3.2", "cheap-model"}
    assert s.prices["cheap-model"].output == 0.2


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"holysheep_prices": "{not json"}, "HOLYSHEEP_PRICES"),
        ({"peakdesk_priority_map": "complaint=9"}, "PEAKDESK_PRIORITY_MAP"),
        ({"peakdesk_port": 70000}, "PEAKDESK_PORT"),
        ({"webhook_callback_url": "not a url"}, "WEBHOOK_CALLBACK_URL"),
        ({"peakdesk_log_format": "xml"}, "PEAKDESK_LOG_FORMAT"),
        ({"webhook_secrets": {"Shop A": "a-secret-of-25-characters"}}, "WEBHOOK_SECRETS"),
        ({"webhook_secrets": {"shop-a": ""}}, "WEBHOOK_SECRETS"),
    ],
)
def test_a_bad_value_is_described_in_one_line_naming_the_variable(
    values: dict[str, object], name: str
) -> None:
    with pytest.raises(ValidationError) as error:
        settings(**values)
    line = describe_error(error.value)
    assert name in line and "\n" not in line


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("shop.example", False),
    ],
)
def test_unsigned_webhooks_are_only_for_loopback_addresses(host: str, loopback: bool) -> None:
    assert settings(peakdesk_host=host).on_loopback is loopback


def test_worker_loops_of_one_process_share_its_llm_slots() -> None:
    assert split_evenly(50, 1) == [50]
    assert split_evenly(50, 3) == [17, 17, 16]
    assert split_evenly(2, 3) == [1, 1, 1]  # every loop can make progress
    assert split_evenly(50, 0) == []


def test_the_example_env_file_is_valid_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "TELEGRAM_BOT_TOKEN", "WEBHOOK_SECRET", "PEAKDESK_HOST"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).resolve().parents[2] / ".env.example"
    s = Settings(_env_file=example)
    assert s.telegram_webhook_secret is None and s.webhook_callback_url is None
    assert s.redis_url is None and s.peakdesk_port == 8080


def test_a_json_setting_that_is_no_json_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRETS", '{"shop-a": "a-secret-of-25-char')
    with pytest.raises(SettingsError) as error:
        settings()
    assert describe_error(error.value) == "invalid setting WEBHOOK_SECRETS: not valid JSON"


def test_gateway_secrets_are_masked_in_logs_as_every_secret() -> None:
    s = settings(webhook_secret="the-default-secret-0", webhook_secrets={"shop-a": "shop-a-own-1"})
    assert {"the-default-secret-0", "shop-a-own-1"} <= set(s.secret_values())
