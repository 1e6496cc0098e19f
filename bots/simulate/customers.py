"""Who writes what and when: customers of the peak, with the Bitext sample's phrasing.

Customers arrive as a Poisson process following the scenario's curve. Most send one message;
some send a burst of two or three within a second (the way people type: "my order hasn't
come" then "it's order 123"), in the same intent; some write again a few seconds after their
answer. The curve counts every message of a first contact (bursts included); follow-ups come on
top, since they depend on when peakdesk answered.

The texts are the ``instruction`` column of the Bitext customer-support sample, a copy of which
ships in ``data/`` with its licence (CDLA-Sharing 1.0), so a fresh clone runs without
``../shared``; ``--bitext PATH`` reads another CSV with that column.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final, Literal

from bots.simulate.scenario import Scenario

SHIPPED_TEXTS: Final = "bitext_instructions.csv"
MessageKind = Literal["first", "burst", "follow_up"]


class TextsError(ValueError):
    """The customer texts cannot be read (a setup failure)."""


@dataclass(frozen=True, slots=True)
class Phrase:
    text: str
    intent: str


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How customers write: shares of bursts and follow-ups, and their timing."""

    burst_share: float = 0.15
    burst_window_s: float = 1.0
    follow_up_share: float = 0.10
    think_s: tuple[float, float] = (3.0, 15.0)  # after the answer, before the follow-up

    @property
    def messages_per_contact(self) -> float:
        """Mean messages of a first contact: a burst is 2 or 3 messages, evenly."""
        return 1 + self.burst_share * 1.5


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    at: float  # seconds from the start of the run
    conversation: str
    text: str
    kind: MessageKind


@dataclass(frozen=True, slots=True)
class Customer:
    conversation: str
    follow_up: Phrase | None  # what they write after their answer, if they do
    think_s: float


@dataclass(frozen=True, slots=True)
class Plan:
    """The first contacts, in time order, and each customer's later behaviour."""

    messages: list[PlannedMessage]
    customers: dict[str, Customer]


def load_phrases(path: Path | None = None) -> tuple[list[Phrase], str]:
    """The customer texts of ``path`` (default: the shipped copy) and a note saying which."""
    try:
        if path is None:
            source = resources.files("bots.simulate").joinpath("data", SHIPPED_TEXTS)
            rows = list(csv.DictReader(io.StringIO(source.read_text(encoding="utf-8"))))
            where = f"the shipped Bitext sample ({SHIPPED_TEXTS})"
        else:
            with path.open(encoding="utf-8", newline="") as file:
                rows = list(csv.DictReader(file))
            where = str(path)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise TextsError(f"cannot read the customer texts: {exc}") from exc
    phrases = [
        Phrase(text.strip(), (row.get("intent") or "").strip() or "unknown")
        for row in rows
        if (text := row.get("instruction") or "").strip()
    ]
    if not phrases:
        raise TextsError(f"no `instruction` texts in {where}")
    distinct = len({p.text.lower() for p in phrases})
    return phrases, f"{len(phrases):,} texts ({distinct:,} distinct) from {where}"


def plan_peak(
    scenario: Scenario,
    phrases: list[Phrase],
    *,
    seed: int,
    behaviour: Behaviour | None = None,
) -> Plan:
    """The first contacts of the whole scenario, reproducible from ``seed``.

    Arrivals are drawn by thinning a Poisson process at the peak rate, so the count per
    second follows the curve with Poisson noise, as independent customers do.
    """
    b = behaviour or Behaviour()
    rng = random.Random(seed)
    by_intent: dict[str, list[Phrase]] = {}
    for phrase in phrases:
        by_intent.setdefault(phrase.intent, []).append(phrase)
    top = scenario.peak_per_s / b.messages_per_contact
    messages: list[PlannedMessage] = []
    customers: dict[str, Customer] = {}
    t = 0.0
    while top > 0:
        t += rng.expovariate(top)
        if t >= scenario.duration_s:
            break
        if rng.random() * top > scenario.rate(t) / b.messages_per_contact:
            continue
        conversation = f"c{len(customers):06d}"
        first = rng.choice(phrases)
        messages.append(PlannedMessage(t, conversation, first.text, "first"))
        if rng.random() < b.burst_share:
            same = by_intent[first.intent]
            for _ in range(rng.choice((1, 2))):
                at = t + rng.uniform(0.05, b.burst_window_s)
                messages.append(PlannedMessage(at, conversation, rng.choice(same).text, "burst"))
        follow_up = rng.choice(phrases) if rng.random() < b.follow_up_share else None
        customers[conversation] = Customer(conversation, follow_up, rng.uniform(*b.think_s))
    messages.sort(key=lambda m: m.at)
    return Plan(messages, customers)
