"""The ``peakdesk`` command: ``serve`` (HTTP server plus workers), ``worker`` (workers only),
``chat`` (talk to the bot in a terminal), ``simulate`` (a peak against a local peakdesk, with a
report) and ``telegram`` (bot administration)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from bots.connections import Listener
from bots.logs import configure_logging
from bots.runtime import Runtime
from bots.settings import MIN_SECRET_LENGTH, Settings, describe_error, reveal
from bots.simulate.options import add_arguments as add_simulate_arguments
from core.aio import wait_event

log = logging.getLogger("peakdesk")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peakdesk", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="HTTP server (webhooks, health, metrics) + workers")
    serve.add_argument("--host", help="listen address (default PEAKDESK_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default PEAKDESK_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="in-process worker loops; 0 = gateway only (default 1)",
    )
    worker = commands.add_parser("worker", help="workers only, to scale out on a shared Redis")
    worker.add_argument("--workers", type=int, default=1, help="worker loops (default 1)")
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve /healthz, /readyz and /metrics on PEAKDESK_HOST:PORT (default: no listener)",
    )
    chat = commands.add_parser(
        "chat", help="talk to the bot in this terminal as a demo shop customer"
    )
    chat.add_argument(
        "--as",
        dest="identity",
        help="the demo identity to speak as, e.g. telegram:1001 (default: pick one)",
    )
    simulate = commands.add_parser(
        "simulate",
        help="replay a peak against a local peakdesk with a simulated provider; writes a report",
        description="Replays a peak (baseline, ramp, hold, decay) against a `peakdesk serve` "
        "subprocess with a simulated OpenAI-compatible provider and a local callback sink, and "
        "writes report.json, report.md and report.png.",
    )
    add_simulate_arguments(simulate)
    telegram = commands.add_parser("telegram", help="Telegram bot administration")
    telegram_commands = telegram.add_subparsers(dest="telegram_command", required=True)
    set_webhook = telegram_commands.add_parser(
        "set-webhook", help="register <public URL>/telegram/webhook with Telegram"
    )
    set_webhook.add_argument("url", help="public HTTPS URL of POST /telegram/webhook")
    telegram_commands.add_parser("delete-webhook", help="remove the registered webhook")
    return parser


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or exit with one line naming the bad variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except Exception as exc:
        print(f"peakdesk: {describe_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


def check_startup(settings: Settings, *, serving: bool) -> None:
    """Refuse unsafe combinations; announce the embedded defaults."""
    if serving and not settings.on_loopback:
        for name in settings.short_secrets():
            print(
                f"peakdesk: refusing to listen on {settings.peakdesk_host} with a {name} of "
                f"fewer than {MIN_SECRET_LENGTH} characters (it could be guessed)",
                file=sys.stderr,
            )
            raise SystemExit(2)
    if serving and not (reveal(settings.webhook_secret) or settings.webhook_secrets):
        if not settings.on_loopback:
            print(
                f"peakdesk: refusing to listen on {settings.peakdesk_host} without WEBHOOK_SECRET "
                "(unsigned webhooks are accepted only on a loopback address)",
                file=sys.stderr,
            )
            raise SystemExit(2)
        log.warning("WEBHOOK_SECRET is not set: accepting unsigned webhooks (loopback only)")
    telegram_webhook = (
        reveal(settings.telegram_bot_token) is not None and settings.telegram_mode == "webhook"
    )
    if serving and telegram_webhook and not reveal(settings.telegram_webhook_secret):
        if not settings.on_loopback:
            print(
                f"peakdesk: refusing to listen on {settings.peakdesk_host} without "
                "TELEGRAM_WEBHOOK_SECRET (anyone could post fake Telegram updates)",
                file=sys.stderr,
            )
            raise SystemExit(2)
        log.warning("TELEGRAM_WEBHOOK_SECRET is not set: Telegram updates are not authenticated")
    for channel, given, names in (
        (
            "Slack",
            settings.slack_settings,
            "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and SLACK_SUPPORT_CHANNEL",
        ),
        ("WeChat", settings.wechat_settings, "WECHAT_TOKEN, WECHAT_APP_ID and WECHAT_APP_SECRET"),
    ):
        if any(given) and not all(given):
            print(f"peakdesk: {channel} needs {names} together (some are missing)", file=sys.stderr)
            raise SystemExit(2)
    if not settings.slack_enabled:
        log.warning("Slack is not configured: no hand-over to people, the bot answers everything")
    if not reveal(settings.holysheep_api_key):
        log.warning(
            "HOLYSHEEP_API_KEY is not set: the LLM is not configured, "
            "customers get the fallback answer"
        )
    if not settings.redis_url:
        log.warning("REDIS_URL is not set: embedded in-process store (fakeredis), one process only")


async def _run(settings: Settings, workers: int, serving: bool, ops_port: int | None) -> None:
    """Run until SIGTERM or SIGINT, then shut down in order (README: Health checks for load
    balancers): drain, close the listener, stop the workers.

    The drain (``PEAKDESK_SHUTDOWN_GRACE_S``, on SIGTERM in a serving process): /readyz answers
    503 while requests are still taken, so load balancers stop sending before the listener
    closes. SIGINT (Ctrl-C in a terminal) or a second signal skips or ends it.
    """
    runtime = Runtime(settings, workers=workers, ingest=serving)
    signalled = asyncio.Event()
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if signalled.is_set() or sig == signal.SIGINT:
            hurry.set()
        signalled.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    listener: Listener | None = None
    try:
        await runtime.start()
        # Everything imported and built so far lives as long as the process: keep it out of
        # the garbage collector's full passes (with aiogram loaded they took the ingest p99
        # from 19 ms to 142 ms under load).
        gc.freeze()
        if serving or ops_port is not None:
            app = runtime.app() if serving else runtime.ops_app()
            listener = Listener(app, settings, ops_port, metrics=runtime.metrics)
            await listener.start()
            log.info(
                "listening on http://%s:%d%s with %d worker loop(s)",
                settings.peakdesk_host,
                listener.port,
                "" if serving else " (health, readiness and metrics only)",
                workers,
            )
        else:
            log.info("worker started with %d worker loop(s)", workers)
        await signalled.wait()
        grace = settings.peakdesk_shutdown_grace_s
        if serving and grace > 0 and not hurry.is_set():
            runtime.draining.set()
            log.info(
                "draining: /readyz answers 503, requests are still served for %g s "
                "(a second signal ends this)",
                grace,
            )
            await wait_event(hurry, grace)
        runtime.draining.set()
        log.info("stopping: no new work is taken")
    finally:
        if listener is not None:
            await listener.close()  # stop accepting requests, finish those in flight
        await runtime.stop()
        log.info("stopped")


async def _telegram_admin(settings: Settings, command: str, url: str | None) -> str:
    from adapters.telegram.bot import TelegramSetupError, delete_webhook, make_bot, set_webhook

    token = reveal(settings.telegram_bot_token)
    if token is None:
        raise SystemExit("peakdesk: TELEGRAM_BOT_TOKEN is not set")
    bot = make_bot(token, settings.telegram_api_base)
    try:
        if command == "set-webhook":
            assert url is not None
            secret = reveal(settings.telegram_webhook_secret)
            if secret is None:
                raise SystemExit(
                    "peakdesk: set TELEGRAM_WEBHOOK_SECRET first: Telegram sends it with every "
                    "update, and /telegram/webhook refuses updates without it"
                )
            await set_webhook(bot, url, secret)
            return f"webhook set: {url}"
        await delete_webhook(bot)
        return "webhook deleted"
    except (TelegramSetupError, ValueError) as exc:  # one line, never the token
        raise SystemExit(f"peakdesk: telegram {command} failed: {exc}") from None
    finally:
        await bot.session.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "telegram":
        settings = load_settings()
        configure_logging(settings.peakdesk_log_format, "WARNING", secrets=settings.secret_values())
        url = getattr(args, "url", None)
        if url is not None and not url.startswith(("https://", "http://")):
            print("peakdesk: the webhook URL must start with https://", file=sys.stderr)
            raise SystemExit(2)
        print(asyncio.run(_telegram_admin(settings, args.telegram_command, url)))
        return
    if args.command == "simulate":
        from bots.simulate.run import main as simulate

        raise SystemExit(simulate(args))
    if args.command == "chat":
        from bots.chat import chat

        settings = load_settings()
        configure_logging(  # the chat is the output
            settings.peakdesk_log_format, "ERROR", secrets=settings.secret_values()
        )
        asyncio.run(chat(settings, args.identity))
        return
    serving = args.command == "serve"
    settings = load_settings(
        peakdesk_host=getattr(args, "host", None), peakdesk_port=getattr(args, "port", None)
    )
    configure_logging(
        settings.peakdesk_log_format,
        settings.peakdesk_log_level,
        secrets=settings.secret_values(),
    )
    if args.workers < 0:
        print("peakdesk: --workers must be 0 or more", file=sys.stderr)
        raise SystemExit(2)
    check_startup(settings, serving=serving)
    if not serving and args.workers == 0:
        print("peakdesk: a worker process needs --workers 1 or more", file=sys.stderr)
        raise SystemExit(2)
    if not settings.redis_url and not serving:
        print(
            "peakdesk: `peakdesk worker` needs REDIS_URL (the embedded store is one process)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    ops_port = getattr(args, "metrics_port", None)
    if ops_port is not None and not 0 < ops_port < 65536:
        print("peakdesk: --metrics-port must be 1-65535", file=sys.stderr)
        raise SystemExit(2)
    asyncio.run(_run(settings, args.workers, serving, ops_port))


if __name__ == "__main__":
    main()
