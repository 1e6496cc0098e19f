"""``/readyz`` as a load balancer reads it, over real HTTP: ready while Redis answers (whatever
the backlog), 503 with a reason when it does not, 503 ``stopping`` from SIGTERM on while the
listener still serves; ``/healthz`` stays liveness only."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from bots.http import build_app
from core.keys import Keys
from core.metrics import Metrics
from core.queue import PriorityQueue
from core.store import connect_redis
from tests.bots.test_cli import clean_env, free_port
from tests.conftest import REAL_REDIS_URL, real_redis_or_skip
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, message, wired_settings

# Nothing ready-made answers it: it waits in the queue as a priority-2 message.
QUESTION = "my blender makes a strange noise, is that normal?"


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_ready_with_the_backlog_in_the_body_even_when_the_queue_is_full(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_max_queue=2)
    async with Service(settings, redis, workers=0) as svc:
        statuses = [(await svc.post("gw", message(n, QUESTION)))[0] for n in range(3)]
        for _ in range(100):  # the peak monitor reads the depths once a second
            status, body = await get_json(svc.client, svc.url("/readyz"))
            if sum(body.get("queue_depth", {}).values()) == 2:
                break
            await asyncio.sleep(0.05)
    assert statuses == [202, 202, 503]  # the admission limit refuses the third
    assert status == 200 and body["status"] == "ready"
    assert body["queue_depth"] == {"0": 0, "1": 0, "2": 2} and body["peak_level"] >= 0


async def test_draining_answers_503_stopping_while_requests_are_still_served(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url)
    async with Service(settings, redis, workers=0) as svc:
        svc.runtime.draining.set()
        ready = await get_json(svc.client, svc.url("/readyz"))
        alive = await get_json(svc.client, svc.url("/healthz"))
        status, _, headers = await svc.post("gw", message(1))
    assert ready == (503, {"status": "stopping", "reason": ready[1]["reason"]})
    assert "shutting down" in ready[1]["reason"]
    assert alive == (200, {"status": "ok"})  # liveness: never restart a draining process
    assert status == 202  # still taken
    assert headers["Connection"] == "close"  # the next request goes through the balancer


async def test_a_refused_redis_connection_is_503_with_the_reason(
    keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        settings = wired_settings(keys, fake_llm.base_url, receiver.url)
        async with Service(settings, dead, workers=0) as svc:
            status, body = await get_json(svc.client, svc.url("/readyz"))
            alive, _ = await get_json(svc.client, svc.url("/healthz"))
    finally:
        await dead.aclose()
    assert status == 503 and body == {"status": "unavailable", "reason": "redis: ConnectionError"}
    assert alive == 200


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A server that takes connections and never answers: a hung Redis."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_redis_that_does_not_answer_in_time_is_503_with_the_reason(
    silent_redis: str, keys: Keys
) -> None:
    hung = connect_redis(silent_redis)
    app = build_app([], hung, PriorityQueue(hung, keys), Metrics(), ready_timeout_s=0.2)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await get_json(http, str(server.make_url("/readyz")))
    finally:
        await server.close()
        await hung.aclose()
    assert status == 503
    assert body == {"status": "unavailable", "reason": "redis: no answer within 0.2 s"}


# -- the peakdesk command: SIGTERM, the drain, a worker's metrics listener ---------------


class Process:
    """A ``peakdesk`` subprocess on a free port, its stderr collected."""

    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        self.tmp_path, self.args, self.env = tmp_path, args, env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, port_flag: str | None = None) -> None:
        args = [*self.args, port_flag, str(self.port)] if port_flag else list(self.args)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            *args,
            cwd=self.tmp_path,
            env=clean_env(PEAKDESK_PORT=str(self.port), **self.env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    if (await get_json(http, f"{self.base}/readyz"))[0] == 200:
                        return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("peakdesk did not become ready")

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def exit(self) -> tuple[int, str]:
        assert self.process is not None
        _, stderr = await asyncio.wait_for(self.process.communicate(), 30)
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


async def poll_until_stopping(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            status, body = await get_json(http, f"{base}/readyz")
            if status == 503:
                return body
            await asyncio.sleep(0.02)
    raise AssertionError("/readyz never answered 503")


@pytest.mark.slow
async def test_sigterm_drains_then_closes_the_listener_and_exits_cleanly(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    peakdesk = Process(
        tmp_path, "serve", PEAKDESK_SHUTDOWN_GRACE_S="3", PEAKDESK_BURST_WINDOW_S="0"
    )
    try:
        await peakdesk.start()
        peakdesk.send(signal.SIGTERM)
        stopping = await poll_until_stopping(peakdesk.base)
        async with aiohttp.ClientSession() as http:  # the listener still takes webhooks
            body = {
                "message_id": "1",
                "user_id": "alice",
                "text": "hi",
                "callback_url": receiver.url,
            }
            async with http.post(f"{peakdesk.base}/webhook/demo", json=body) as response:
                accepted = response.status
        [answer] = await receiver.wait_for(1)  # and the workers still answer
        code, log = await peakdesk.exit()
    finally:
        peakdesk.kill()
    assert stopping["status"] == "stopping"
    assert accepted == 202 and answer["message_id"] == "1"
    assert code == 0
    assert "draining: /readyz answers 503" in log and "stopped" in log.splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_ends_the_drain(tmp_path: Path, second: signal.Signals) -> None:
    peakdesk = Process(tmp_path, "serve", PEAKDESK_SHUTDOWN_GRACE_S="600")
    try:
        await peakdesk.start()
        peakdesk.send(signal.SIGTERM)
        await poll_until_stopping(peakdesk.base)
        peakdesk.send(second)
        code, log = await peakdesk.exit()  # well before the 600 s drain
    finally:
        peakdesk.kill()
    assert code == 0 and "stopped" in log.splitlines()[-1]


@pytest.mark.slow
async def test_sigint_in_a_terminal_skips_the_drain(tmp_path: Path) -> None:
    peakdesk = Process(tmp_path, "serve", PEAKDESK_SHUTDOWN_GRACE_S="600")
    try:
        await peakdesk.start()
        peakdesk.send(signal.SIGINT)
        code, log = await peakdesk.exit()
    finally:
        peakdesk.kill()
    assert code == 0 and "draining" not in log


@pytest.mark.slow
@pytest.mark.redis
async def test_a_worker_serves_health_readiness_and_metrics_only_with_metrics_port(
    tmp_path: Path,
) -> None:
    await (await real_redis_or_skip()).aclose()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    worker = Process(tmp_path, "worker", REDIS_URL=REAL_REDIS_URL, PEAKDESK_REDIS_PREFIX=prefix)
    try:
        await worker.start("--metrics-port")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{worker.base}/metrics") as response:
                metrics = await response.text()
            async with http.post(f"{worker.base}/webhook/demo", json={}) as response:
                webhook = response.status
        worker.send(signal.SIGTERM)
        code, log = await worker.exit()
    finally:
        worker.kill()
        redis = connect_redis(REAL_REDIS_URL)
        async for key in redis.scan_iter(match="{" + prefix + "}*"):
            await redis.delete(key)
        await redis.aclose()
    assert 'peakdesk_queue_depth{priority="0"} 0.0' in metrics
    assert webhook == 404  # no ingest on a worker
    assert code == 0 and "draining" not in log  # nobody routes traffic to a worker
