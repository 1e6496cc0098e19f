"""The peakdesk under test: ``peakdesk serve`` as a subprocess, and what its ``/metrics`` say.

The process gets an environment of its own: the caller's environment without any peakdesk,
LLM, Redis, channel or store setting (a real Telegram token, Slack app or store API must never
be reached from a simulation), then the simulator's settings, plus the tuning settings an
operator may want to try under load (``PEAKDESK_*`` and the LLM call settings), passed through
by name. It runs in an empty directory, so no ``.env`` file is read either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from core.store import delete_prefix

SETTING_PREFIXES = (
    "PEAKDESK_",
    "HOLYSHEEP_",
    "WEBHOOK_",
    "REDIS_",
    "TELEGRAM_",
    "SLACK_",
    "STORE_",
)
# LLM call settings worth trying under load; the key, URL and limits are the simulator's.
PASSED_LLM_SETTINGS = frozenset(
    {
        "HOLYSHEEP_MODEL",
        "HOLYSHEEP_MAX_TOKENS",
        "HOLYSHEEP_TEMPERATURE",
        "HOLYSHEEP_TIMEOUT_S",
        "HOLYSHEEP_MAX_ATTEMPTS",
        "HOLYSHEEP_DEADLINE_S",
        "HOLYSHEEP_BACKOFF_BASE_S",
        "HOLYSHEEP_PRICES",
        "WEBHOOK_CALLBACK_TIMEOUT_S",
        "WEBHOOK_CALLBACK_MAX_ATTEMPTS",
    }
)
# Paths would point elsewhere from the process's empty directory; the rest are set here.
NOT_PASSED = frozenset(
    {"PEAKDESK_DEMO_IDENTITIES", "PEAKDESK_TEMPLATE_FILE", "PEAKDESK_TEST_REDIS_URL"}
)
READY_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
STOP_TIMEOUT_S = 30.0  # peakdesk gives in-flight messages 20 s on SIGTERM


class SetupError(RuntimeError):
    """The simulation could not start (peakdesk, Redis, ports): exit non-zero."""


def peakdesk_env(
    settings: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The subprocess's environment: see the module docstring. Returns it and the names of
    the settings passed through from ``environ`` (never their values: some may be secret)."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if not k.startswith(SETTING_PREFIXES)}
    passed = sorted(
        k
        for k in source
        if (k.startswith("PEAKDESK_") or k in PASSED_LLM_SETTINGS)
        and k not in settings
        and k not in NOT_PASSED
    )
    env.update({k: source[k] for k in passed})
    env.update(settings)
    # Run the same code as this process, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env, passed


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """One scrape of ``/metrics``: every sample by name and labels."""

    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> MetricsSample:
        values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return cls(values)

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples that carry ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and wanted <= ls)

    def value(self, name: str) -> float | None:
        """The sample of an unlabelled ``name``; None when peakdesk does not export it."""
        return self.values.get((name, frozenset()))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``name``'s samples summed per value of ``label``."""
        sums: dict[str, float] = {}
        for (n, labels), value in self.values.items():
            if n == name:
                key = dict(labels).get(label, "")
                sums[key] = sums.get(key, 0.0) + value
        return sums


class PeakdeskProcess:
    """``peakdesk serve --workers N`` on ``port``, its output in ``log_path``."""

    def __init__(self, env: Mapping[str, str], port: int, workers: int, log_path: Path) -> None:
        self.env = dict(env)
        self.url = f"http://127.0.0.1:{port}"
        self.workers = workers
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self, session: aiohttp.ClientSession, workdir: Path) -> None:
        """Start it and wait until ``/readyz`` answers 200; SetupError if it does not."""
        self._log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            "serve",
            "--workers",
            str(self.workers),
            cwd=workdir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                raise SetupError(f"peakdesk serve exited ({self.process.returncode}):{self.tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=1)
                ) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise SetupError(f"peakdesk serve not ready after {READY_TIMEOUT_S:g} s:{self.tail()}")

    def cpu_s(self) -> float | None:
        """CPU seconds it used so far (user + system), from /proc; None where there is none."""
        if self.process is None:
            return None
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def tail(self, chars: int = 2000) -> str:
        """The end of its log (peakdesk logs no secrets or message texts)."""
        if self._log is not None:
            self._log.flush()
        with contextlib.suppress(OSError):
            return "\n" + self.log_path.read_text(errors="replace")[-chars:]
        return ""

    async def scrape(self, session: aiohttp.ClientSession) -> MetricsSample | None:
        """``/metrics`` now, or None when it does not answer within 5 s."""
        try:
            async with session.get(
                self.url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                if response.status != 200:
                    return None
                return MetricsSample.parse(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def wait(self) -> int:
        """Until the process exits (by itself: a crash); its exit code."""
        assert self.process is not None
        return await self.process.wait()

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``; returns its exit code."""
        process = self.process
        try:
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return process.returncode if process is not None else None


async def check_redis(url: str) -> None:
    """SetupError unless the Redis at ``url`` answers."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise SetupError(f"Redis at --redis-url does not answer: {type(exc).__name__}") from exc
    finally:
        await client.aclose()


async def delete_keys(url: str, prefix: str) -> int:
    """Unlink every key of the run (``{prefix}*``); returns how many there were."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        return await delete_prefix(client, prefix)
    finally:
        await client.aclose()
