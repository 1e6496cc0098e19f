"""One simulation from start to report: set up, replay the peak, drain, measure, clean up.

The provider, the callback sink, the load generator, the ``/metrics`` sampler and the progress
line share this process's event loop; peakdesk runs as its own process. The run's clock starts
once peakdesk is ready, so start-up time is not counted against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bots.simulate.analysis import RunRecord, analyse, message_rows
from bots.simulate.customers import Behaviour, TextsError, load_phrases, plan_peak
from bots.simulate.load import LoadGenerator
from bots.simulate.monitor import Progress, Sampler
from bots.simulate.options import Options, options_from
from bots.simulate.peakdesk import (
    PeakdeskProcess,
    SetupError,
    check_redis,
    delete_keys,
    peakdesk_env,
)
from bots.simulate.provider import ProviderConfig, SimulatedProvider
from bots.simulate.report import write_report
from bots.simulate.scenario import Scaled, Scenario, scaled_limit
from bots.simulate.sink import CallbackSink

SETTLE_S = 3.0  # after the last answer: time for a wrong second reply to show up
MAX_CONCURRENT = 10_000  # PEAKDESK_MAX_CONCURRENT's upper bound
NOT_SCALED = (
    "phase durations and every time target (a customer waits in real seconds)",
    "the provider's latency, error rate and tokens per call, so cost per message",
    "customer behaviour: bursts, follow-ups, think times, the texts",
)


class Clock:
    """Seconds since the run started (``start`` sets zero; before it, negative)."""

    def __init__(self) -> None:
        self._zero = time.monotonic()

    def start(self) -> None:
        self._zero = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._zero


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def max_concurrent(provider_concurrency: int) -> int:
    """peakdesk's slots for one process holding the whole (scaled) fleet: twice what the
    provider takes at once (slots also wait for shared answers and turns), within the
    setting's range."""
    return min(MAX_CONCURRENT, max(50, 2 * provider_concurrency))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` on 127.0.0.1 at a free port; the runner and its base URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def redacted(url: str | None) -> str:
    """A Redis URL without its credentials, for the report."""
    if not url:
        return "embedded (no REDIS_URL)"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def scaled_quantities(options: Options, provider: ProviderConfig, max_queue: int) -> list[Scaled]:
    o = options
    return [
        Scaled("baseline arrivals", o.baseline_per_min, o.baseline_per_min * o.scale, "msg/min"),
        Scaled(
            "peak arrivals",
            o.baseline_per_min * o.peak_factor,
            o.baseline_per_min * o.peak_factor * o.scale,
            "msg/min",
        ),
        Scaled("provider requests limit", o.provider_rpm, provider.rpm, "req/min"),
        Scaled("provider tokens limit", o.provider_tpm, provider.tpm, "tokens/min"),
        Scaled("provider concurrency limit", o.provider_concurrency, provider.concurrency, "calls"),
        Scaled("admission limit PEAKDESK_MAX_QUEUE", o.max_queue, max_queue, "messages"),
    ]


class Simulation:
    """One run: its plan and settings are fixed at construction, :meth:`run` does the rest."""

    def __init__(self, options: Options, progress: TextIO = sys.stderr) -> None:
        o = self.options = options
        self.progress = progress
        try:
            phrases, self.texts_note = load_phrases(o.bitext)
        except TextsError as exc:
            raise SetupError(str(exc)) from exc
        self.scenario = Scenario(
            o.scale, o.baseline_per_min, o.peak_factor, o.baseline_s, o.ramp_s, o.hold_s, o.decay_s
        )
        self.behaviour = Behaviour()
        self.plan = plan_peak(self.scenario, phrases, seed=o.seed, behaviour=self.behaviour)
        self.clock = Clock()
        self.provider = SimulatedProvider(
            ProviderConfig(
                rpm=scaled_limit(o.provider_rpm, o.scale),
                tpm=scaled_limit(o.provider_tpm, o.scale),
                concurrency=scaled_limit(o.provider_concurrency, o.scale),
                latency_median_s=o.latency_median_s,
                latency_p95_s=o.latency_p95_s,
                error_rate=o.error_rate,
                seed=o.seed,
            ),
            self.clock,
        )
        self.sink = CallbackSink(self.clock)
        self.max_queue = scaled_limit(o.max_queue, o.scale)
        self.prefix = "sim" + secrets.token_hex(4)
        self.settings = self._settings()
        self.died_at: float | None = None  # when peakdesk exited during the run, if it did

    def _settings(self) -> dict[str, str]:
        """What the simulator sets for peakdesk (URLs are added once the servers listen)."""
        o, limits = self.options, self.provider.config
        settings = {
            "HOLYSHEEP_API_KEY": limits.api_key,
            "PEAKDESK_HOST": "127.0.0.1",
            "PEAKDESK_PORT": str(free_port()),
            "PEAKDESK_REDIS_PREFIX": self.prefix,
            "PEAKDESK_MAX_QUEUE": str(self.max_queue),
            "PEAKDESK_MAX_CONCURRENT": str(o.max_concurrent or max_concurrent(limits.concurrency)),
            "PEAKDESK_PEAK_MODE": os.environ.get("PEAKDESK_PEAK_MODE", "auto"),
            "PEAKDESK_LOG_LEVEL": "WARNING",
            "PEAKDESK_LOG_FORMAT": "text",
        }
        if o.configure_limits:
            for name, value in (
                ("HOLYSHEEP_RPM", limits.rpm),
                ("HOLYSHEEP_TPM", limits.tpm),
                ("HOLYSHEEP_CONCURRENCY", limits.concurrency),
            ):
                if value:
                    settings[name] = str(value)
        if o.redis_url:
            settings["REDIS_URL"] = o.redis_url
        return settings

    async def run(self) -> dict[str, Any]:
        """Set up, replay, clean up and write the report; returns it. SetupError when the run
        could not start; whatever started is stopped and the run's Redis keys deleted."""
        o = self.options
        o.out.mkdir(parents=True, exist_ok=True)
        if o.redis_url:
            await check_redis(o.redis_url)
        started_at = datetime.now(UTC)
        wall_start = time.monotonic()
        runners: list[web.AppRunner] = []
        peakdesk: PeakdeskProcess | None = None
        exit_code: int | None = None
        # Sends and scrapes on separate pools: a slow ingest must not delay the depth samples.
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        scrapes = aiohttp.ClientSession()
        try:
            provider_runner, provider_url = await serve(self.provider.app())
            runners.append(provider_runner)
            sink_runner, sink_url = await serve(self.sink.app())
            runners.append(sink_runner)
            self.settings["HOLYSHEEP_BASE_URL"] = provider_url + "/v1"
            self.settings["WEBHOOK_CALLBACK_URL"] = sink_url + "/callback"
            env, passed = peakdesk_env(self.settings)
            port = int(self.settings["PEAKDESK_PORT"])
            peakdesk = PeakdeskProcess(env, port, o.workers, o.out / "peakdesk.log")
            with tempfile.TemporaryDirectory(prefix="peakdesk-sim-") as workdir:
                await peakdesk.start(scrapes, Path(workdir))
                self._announce(peakdesk.url)
                record, sampler = await self._replay(peakdesk, session, scrapes, sink_url)
        finally:
            if peakdesk is not None:
                exit_code = await peakdesk.stop()
            await session.close()
            await scrapes.close()
            for runner in runners:
                await runner.cleanup()
            if o.redis_url:
                with contextlib.suppress(Exception):
                    await delete_keys(o.redis_url, self.prefix)
        report = {
            **self._describe(passed, exit_code, sampler.failed),
            "run": {
                "started_at": started_at.isoformat(timespec="seconds"),
                "wall_s": round(time.monotonic() - wall_start, 1),
                "load_s": round(record.load_end_s, 1),
                "drain_s": round(record.end_s - record.load_end_s, 1),
                "drained": record.drained,
                "drain_timeout_s": o.drain_timeout_s,
                "max_send_lag_s": round(record.max_lag_s, 3),
                "peakdesk_died_at_s": _round(self.died_at),
            },
            **analyse(record),
        }
        write_report(report, message_rows(record), o.out)
        return report

    def _announce(self, url: str) -> None:
        s, o = self.scenario, self.options
        print(
            f"peakdesk simulate: {len(self.plan.messages):,} first-contact messages planned over "
            f"{s.duration_s:g} s at scale {o.scale:g} (baseline {s.baseline_per_s * 60:,.0f}/min, "
            f"peak {s.peak_per_s * 60:,.0f}/min); provider {self.provider.config.rpm:,} req/min; "
            f"peakdesk at {url} on {redacted(o.redis_url)}",
            file=self.progress,
            flush=True,
        )

    async def _replay(
        self,
        peakdesk: PeakdeskProcess,
        session: aiohttp.ClientSession,
        scrapes: aiohttp.ClientSession,
        sink_url: str,
    ) -> tuple[RunRecord, Sampler]:
        """The load, then the drain: until every accepted message has its answer (and no
        refused one is still being retried), or the drain timeout."""
        o, clock = self.options, self.clock
        load = LoadGenerator(
            session,
            peakdesk.url,
            sink_url + "/callback",
            self.plan,
            clock,
            end_at=self.scenario.duration_s,
            give_up_s=o.give_up_s,
            seed=o.seed,
        )
        self.sink.on_reply = load.on_reply
        sampler = Sampler(peakdesk, scrapes, clock)
        progress = Progress(
            self.scenario, load, self.sink, self.provider, sampler, clock, self.progress
        )
        stop = asyncio.Event()
        clock.start()
        loop = asyncio.get_running_loop()
        background = [
            loop.create_task(sampler.run(stop)),
            loop.create_task(progress.run(o.progress_every_s, stop)),
        ]
        # peakdesk dying under load ends the run: what it answered until then is reported.
        exited = loop.create_task(peakdesk.wait())

        def note_exit(task: asyncio.Task[int]) -> None:
            if not task.cancelled():
                self.died_at = clock()

        exited.add_done_callback(note_exit)
        sending = loop.create_task(load.run())
        try:
            await asyncio.wait({sending, exited}, return_when=asyncio.FIRST_COMPLETED)
            if sending.done():
                sending.result()
            else:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
            load_end = clock()
            progress.draining = True
            drained = False
            while not exited.done() and clock() - load_end < o.drain_timeout_s:
                if load.sending == 0 and load.unanswered == 0:
                    drained = True
                    break
                await asyncio.sleep(0.25)
            if drained:
                await asyncio.sleep(SETTLE_S)
            await load.finish(0)
            end = clock()
        finally:
            if not exited.done():
                exited.cancel()
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
        await sampler.sample()
        print(progress.line(), file=self.progress, flush=True)
        record = RunRecord(
            scenario=self.scenario,
            provider=self.provider.config,
            messages=load.messages,
            replies=self.sink.replies,
            load_seconds=load.seconds,
            provider_seconds=self.provider.seconds,
            depths=sampler.depths,
            levels=sampler.levels,
            estimates=sampler.estimates,
            cpu=sampler.cpu,
            final_metrics=sampler.last,
            load_end_s=load_end,
            end_s=end,
            drained=drained,
            malformed_callbacks=self.sink.malformed,
            unauthorized_calls=self.provider.unauthorized,
            max_lag_s=load.max_lag_s,
        )
        return record, sampler

    def _shown_settings(self) -> dict[str, str]:
        """The settings given to peakdesk, as the report may show them: no API key, no Redis
        credentials."""
        shown = {k: v for k, v in self.settings.items() if k != "HOLYSHEEP_API_KEY"}
        if "REDIS_URL" in shown:
            shown["REDIS_URL"] = redacted(shown["REDIS_URL"])
        return shown

    def _describe(
        self, passed: list[str], exit_code: int | None, failed_scrapes: int
    ) -> dict[str, Any]:
        """The report's account of what ran: scenario, what was scaled, peakdesk's settings."""
        s, o = self.scenario, self.options
        return {
            "scenario": {
                **asdict(s),
                "duration_s": s.duration_s,
                "baseline_per_min_simulated": round(s.baseline_per_s * 60, 3),
                "peak_per_min_simulated": round(s.peak_per_s * 60, 3),
                "seed": o.seed,
                "texts": self.texts_note,
                "customers": asdict(self.behaviour),
            },
            "scaled": [
                q.as_dict() for q in scaled_quantities(o, self.provider.config, self.max_queue)
            ],
            "not_scaled": list(NOT_SCALED),
            "peakdesk": {
                "redis": redacted(o.redis_url),
                "workers": o.workers,
                "settings": self._shown_settings(),
                "limits_configured": o.configure_limits,
                "passed_through": passed,
                "exit_code": exit_code,
                "failed_metrics_scrapes": failed_scrapes,
            },
        }


def main(args: argparse.Namespace) -> int:
    """``peakdesk simulate``: 0 once the run completed (targets are reported, not asserted),
    1 when peakdesk exited during it (the report covers what ran), 2 when it could not
    start."""
    try:
        options = options_from(args)
        simulation = Simulation(options)
    except (ValueError, SetupError) as exc:
        print(f"peakdesk simulate: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(simulation.run())
    except SetupError as exc:
        print(f"peakdesk simulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("peakdesk simulate: interrupted", file=sys.stderr)
        return 130
    out = options.out
    print(f"report: {out / 'report.md'} (and report.json, report.png, messages.csv)")
    died_at = report["run"]["peakdesk_died_at_s"]
    if died_at is not None:
        print(f"peakdesk exited during the run, at {died_at:g} s: see {out / 'peakdesk.log'}")
    for target in report["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        print(f"  {target['target']}: {json.dumps(target['value'])} ({target['goal']}): {verdict}")
    return 0 if died_at is None else 1
