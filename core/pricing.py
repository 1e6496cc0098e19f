"""What LLM calls cost: token usage as providers report it, and a price table per model.

Prices and model names change: the table is configuration (``HOLYSHEEP_PRICES``) over the
built-in defaults below, in USD per 1M tokens, with cache hits priced apart from misses
(DeepSeek-style providers bill a cached prompt prefix far cheaper).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices of one model in USD per 1M tokens: prompt cache miss, cache hit, and output."""

    input: float
    cached_input: float
    output: float


DEFAULT_PRICES: Mapping[str, ModelPrice] = MappingProxyType(
    {"deepseek-v3.2": ModelPrice(input=0.28, cached_input=0.028, output=0.42)}
)

_PRICE_FIELDS = ("input", "cached_input", "output")


def parse_price_table(spec: str) -> dict[str, ModelPrice]:
    """Parse ``{"model": {"input": x, "cached_input": y, "output": z}, ...}`` (USD per 1M tokens).

    ``cached_input`` may be left out (then it equals ``input``). The result holds only the models
    in ``spec``; merge it over :data:`DEFAULT_PRICES` to override some of them.
    Raises ValueError saying what is wrong and where.
    """
    try:
        table = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise ValueError(f"price table is not valid JSON: {exc}") from exc
    if not isinstance(table, dict):
        raise ValueError("price table must be a JSON object mapping model names to prices")
    prices: dict[str, ModelPrice] = {}
    for model, entry in table.items():
        if not model:
            raise ValueError("price table has an empty model name")
        if not isinstance(entry, dict):
            raise ValueError(f"price of {model!r} must be an object with input/cached_input/output")
        unknown = set(entry) - set(_PRICE_FIELDS)
        if unknown:
            raise ValueError(f"price of {model!r} has unknown fields: {sorted(unknown)}")
        values: dict[str, float] = {}
        for name in _PRICE_FIELDS:
            if name not in entry:
                if name == "cached_input" and "input" in values:
                    values[name] = values["input"]
                    continue
                raise ValueError(f"price of {model!r} lacks {name!r}")
            value = entry[name]
            # bool is an int subclass; "true" as a price is a typo, not a number.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"price {model!r}.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"price {model!r}.{name} must be finite and >= 0, got {value!r}")
            values[name] = float(value)
        prices[model] = ModelPrice(**values)
    return prices


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call; ``cached_tokens`` is the part of the prompt the provider cached."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def parse_usage(usage: Any) -> Usage:
    """Read ``usage``, DeepSeek-style (``prompt_cache_hit_tokens``) or OpenAI-style
    (``prompt_tokens_details.cached_tokens``); anything missing or malformed counts as 0."""
    if not isinstance(usage, dict):
        return Usage(0, 0, 0)
    prompt = _int(usage.get("prompt_tokens"))
    if "prompt_cache_hit_tokens" in usage:
        cached = _int(usage.get("prompt_cache_hit_tokens"))
        prompt = prompt or cached + _int(usage.get("prompt_cache_miss_tokens"))
    else:
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(prompt, _int(usage.get("completion_tokens")), min(cached, prompt))


def usage_cost(usage: Usage, price: ModelPrice) -> float:
    """USD cost of ``usage``: cache misses, cache hits and output each at their own price."""
    missed = usage.prompt_tokens - usage.cached_tokens
    return (
        missed * price.input
        + usage.cached_tokens * price.cached_input
        + usage.completion_tokens * price.output
    ) / 1_000_000
