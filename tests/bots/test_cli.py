"""The ``peakdesk`` command as an operator meets it: start-up checks and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.cli import check_startup, load_settings
from bots.settings import Settings

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("PEAKDESK_", "HOLYSHEEP_", "WEBHOOK_", "REDIS_", "SLACK_", "TELEGRAM_")
        )
    }
    env.update(extra)
    return env


async def run_cli(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        *args,
        cwd=tmp_path,
        env=clean_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:  # it started instead of refusing: stop it
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_a_wrong_setting_stops_start_up_with_one_line_naming_it(tmp_path: Path) -> None:
    code, stderr = await run_cli(tmp_path, "serve", PEAKDESK_PORT="eighty")
    assert code == 2
    [line] = stderr.strip().splitlines()
    assert "PEAKDESK_PORT" in line


async def test_a_setting_from_dot_env_is_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PEAKDESK_MAX_CONCURRENT=0\n")
    code, stderr = await run_cli(tmp_path, "serve")
    assert code == 2 and "PEAKDESK_MAX_CONCURRENT" in stderr


async def test_serve_refuses_a_public_address_without_a_webhook_secret(tmp_path: Path) -> None:
    code, stderr = await run_cli(tmp_path, "serve", PEAKDESK_HOST="0.0.0.0")
    assert code == 2 and "WEBHOOK_SECRET" in stderr


STRONG = "a-secret-of-25-characters"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"WEBHOOK_SECRET": " "}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_SECRET": "a"}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_SECRETS": '{"shop-a": "shop-a-short"}'}, "WEBHOOK_SECRETS"),
        ({"TELEGRAM_WEBHOOK_SECRET": "tg-short"}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"PEAKDESK_ADMIN_TOKEN": "admin-short"}, "PEAKDESK_ADMIN_TOKEN"),
        ({"WEBHOOK_SECRETS": '{"shop-a": "'}, "WEBHOOK_SECRETS"),  # no JSON
        ({"WEBHOOK_SECRETS": '{"Shop A": "' + STRONG + '"}'}, "WEBHOOK_SECRETS"),  # no gateway
    ],
)
def test_off_loopback_a_short_secret_stops_start_up_in_one_line_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    name: str,
) -> None:
    # The settings and checks `serve` runs before anything starts (the whole command, in a
    # process of its own, is the next test).
    monkeypatch.chdir(tmp_path)  # no .env
    for variable in set(os.environ) - set(clean_env()):
        monkeypatch.delenv(variable)
    for variable, value in {"WEBHOOK_SECRET": STRONG, **env}.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        check_startup(load_settings(peakdesk_host="192.0.2.1"), serving=True)
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert name in line
    assert not any(word in line for word in ("short", STRONG))  # never the value


async def test_serve_off_loopback_refuses_a_short_secret(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is nobody's address: a server that did not refuse fails to bind
    # rather than listen beyond loopback.
    code, stderr = await run_cli(
        tmp_path, "serve", "--host", "192.0.2.1", "--port", "0", WEBHOOK_SECRET="a"
    )
    assert code == 2, stderr
    [line] = stderr.strip().splitlines()
    assert "WEBHOOK_SECRET" in line and "'a'" not in line


def test_long_secrets_pass_off_loopback_and_short_ones_on_loopback() -> None:
    strong: dict[str, Any] = {
        "webhook_secret": STRONG,
        "webhook_secrets": {"shop-a": STRONG + "-a"},
        "telegram_webhook_secret": "tg-webhook-secret_0123456789",
        "peakdesk_admin_token": STRONG + "-admin",
    }
    check_startup(Settings(_env_file=None, peakdesk_host="0.0.0.0", **strong), serving=True)
    weak: dict[str, Any] = dict.fromkeys(strong, "a") | {"webhook_secrets": {"shop-a": "a"}}
    check_startup(Settings(_env_file=None, peakdesk_host="127.0.0.1", **weak), serving=True)


async def test_serve_refuses_half_a_slack_configuration(tmp_path: Path) -> None:
    code, stderr = await run_cli(
        tmp_path, "serve", SLACK_BOT_TOKEN="xoxb-1", SLACK_SUPPORT_CHANNEL="C0SUP"
    )
    assert code == 2 and "SLACK_SIGNING_SECRET" in stderr
    code, stderr = await run_cli(tmp_path, "serve", SLACK_SUPPORT_CHANNEL="#support")
    assert code == 2 and "SLACK_SUPPORT_CHANNEL" in stderr  # a channel id, not a name


async def test_worker_needs_a_shared_redis(tmp_path: Path) -> None:
    code, stderr = await run_cli(tmp_path, "worker")
    assert code == 2 and "REDIS_URL" in stderr


async def test_serve_on_embedded_defaults_answers_then_exits_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "serve",
        cwd=tmp_path,
        env=clean_env(PEAKDESK_PORT=str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{base}/readyz") as ready:
                        if ready.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            body = {
                "message_id": "1",
                "user_id": "alice",
                "text": "Where is my order?",
                "callback_url": "http://127.0.0.1:9/cb",
            }
            async with http.post(f"{base}/webhook/demo?wait=5", json=body) as response:
                answer = await response.json()
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert answer["status"] == "answered"
    assert answer["reply"]["source"] == "fallback"  # no HOLYSHEEP_API_KEY: the fallback answer
    assert process.returncode == 0
    log = stderr.decode()
    assert "HOLYSHEEP_API_KEY is not set" in log and "REDIS_URL is not set" in log
    assert "stopped" in log.splitlines()[-1]


async def test_chat_answers_a_demo_customer_and_shows_the_source(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "chat",
        "--as",
        "webhook:demo:alice",
        cwd=tmp_path,
        env=clean_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines = b"where is my order 100158?\nwhere is my order 100026?\n\n"
    stdout, stderr = await asyncio.wait_for(process.communicate(lines), 60)
    out = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    assert "customer C001" in out and "100158" in out
    # No LLM key here: the template answers her order; the other one is not hers.
    assert "bot [template]> Your order 100158" in out and "793343217053" in out
    assert "bot [fallback]>" in out and "intent track_order, order 100026" in out


async def test_serve_refuses_half_a_wechat_configuration(tmp_path: Path) -> None:
    code, stderr = await run_cli(
        tmp_path, "serve", WECHAT_TOKEN="t", WECHAT_APP_ID="wx1234567890abcdef"
    )
    assert code == 2 and "WECHAT_APP_SECRET" in stderr
    code, stderr = await run_cli(tmp_path, "serve", WECHAT_AES_KEY="too-short")
    assert code == 2 and "WECHAT_AES_KEY" in stderr
