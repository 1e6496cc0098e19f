"""Logging set-up: readable text in development, one JSON object per line in production.

Every line carries the ticket and conversation it is about (:mod:`core.logcontext`), and every
line is redacted on the way out: the configured secrets and anything that looks like a
customer's email, phone or card number are masked, whatever the code logged.

``PEAKDESK_LOG_LEVEL`` is the level of peakdesk's own loggers (``peakdesk.*``). Other
libraries log at INFO and above whatever it is: their debug lines quote what they send and
receive (slack_sdk writes each request's JSON: a hand-over post with the customer's name,
address and words), which redaction cannot recognise.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from core.logcontext import CONTEXT_FIELDS, ContextFilter, RedactingFilter

APP_LOGGER = "peakdesk"  # the parent of every logger of ours


def is_ours(logger_name: str) -> bool:
    return logger_name == APP_LOGGER or logger_name.startswith(APP_LOGGER + ".")


class LibrariesAtInfo(logging.Filter):
    """Drops other libraries' records below INFO, also from a library that set its own
    logger's level (the root level alone would not stop those)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or is_ours(record.name)


def set_levels(level: str) -> None:
    """``level`` for peakdesk's loggers; INFO or above (``level`` if higher) for the rest."""
    logging.getLogger().setLevel(max(logging.INFO, logging.getLevelNamesMapping()[level]))
    logging.getLogger(APP_LOGGER).setLevel(level)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if value := getattr(record, name, None):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        about = " ".join(
            f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None))
        )
        return f"{line} [{about}]" if about else line


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse as an ERROR with a traceback that quotes the raw
    bytes (a customer's message, and a flood of lines for whoever sends junk): one WARNING
    line naming the error instead. The client got its 400 already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = (
                "malformed request refused (%s)",
                (type(record.exc_info[1]).__name__,),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(
    fmt: str = "text",
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every record to ``stream`` (stderr), formatted and redacted; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(LibrariesAtInfo())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_levels(level)
    # aiohttp's access log would carry full paths and query strings; keep it at WARNING.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())
    return handler
