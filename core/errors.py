"""The peakdesk exception tree.

    PeakdeskError
    ├── LLMError                 a chat-completions call failed (status, code, retry_after)
    ├── StoreUnavailable         Redis could not be reached or refused the write
    ├── AdmissionRefused         the queue is over its admission limit (retry_after)
    └── DeliveryError            a channel could not take a reply (retryable or not)

Low-level errors (aiohttp, redis) are translated into these once, at the boundary,
with ``raise ... from exc``.
"""

from __future__ import annotations


class PeakdeskError(Exception):
    """Root of every error peakdesk raises on purpose."""


class LLMError(PeakdeskError):
    """A chat-completions call failed for good (after the retries it was allowed)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "llm_error",
        details: str = "",
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details
        self.retry_after = retry_after
        self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"LLMError(status={self.status!r}, code={self.code!r}, "
            f"retry_after={self.retry_after!r}, retryable={self.retryable!r})"
        )


class StoreUnavailable(PeakdeskError):
    """The state store (Redis) could not durably take or give data."""


class AdmissionRefused(PeakdeskError):
    """The queue is over its admission limit for this priority; the sender should retry later."""

    def __init__(self, depth: int, retry_after: int) -> None:
        super().__init__(f"queue full ({depth} messages queued)")
        self.depth = depth
        self.retry_after = retry_after


class DeliveryError(PeakdeskError):
    """A channel did not take a reply. ``retryable`` says whether trying again can help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after  # the channel's own delay hint (Telegram 429, say)
