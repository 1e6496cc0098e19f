"""Quality and cost of priority and intent detection (core.priority.PriorityDetector).

Quality, on the Bitext sample (27 intents) and on tests/data/priority_heldout.csv (requests
written by the team, not in the Bitext file, with typos, slang, indirect asks and Chinese):
per-class precision/recall/F1 of the 3 priorities, 3-class accuracy, recall of priority 0
(targets: >= 0.97 p0 recall and >= 0.90 accuracy), and intent accuracy, per intent on Bitext.

Cost, over all Bitext texts: for each text the best of --repeat timings of --number calls
(timeit's convention: the minimum is the least disturbed run), then the median and p99 over
texts, in microseconds per call (target: median <= 20 µs). Beside it, the in-run baseline: the
same statistic for ``text.lower()`` plus one trivial ``re.search``. Also the mean cost of a cold
first pass, with the word memo emptied, which is what the first messages after start-up pay.

Run: ``python benchmarks/priority_detection.py`` from the repository root. The Bitext file is
$PEAKDESK_BITEXT_CSV, else ../shared/data/bitext/customer_support_train.csv beside the repo.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
import timeit
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.intents import clear_memos
from core.models import Priority
from core.priority import DEFAULT_PRIORITY_MAP, INTENTS, PriorityDetector

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BITEXT = REPO_ROOT.parent / "shared/data/bitext/customer_support_train.csv"
HELDOUT = REPO_ROOT / "tests/data/priority_heldout.csv"


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    intent: str


def load_examples(path: Path, text_column: str) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as file:
        return [Example(row[text_column], row["intent"]) for row in csv.DictReader(file)]


def report_quality(name: str, examples: Sequence[Example], detector: PriorityDetector) -> None:
    """Print priority precision/recall/F1, accuracy, p0 recall and intent accuracy."""
    confusion: Counter[tuple[Priority, Priority]] = Counter()
    per_intent: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for example in examples:
        detection = detector.detect(example.text)
        confusion[DEFAULT_PRIORITY_MAP[example.intent], detection.priority] += 1
        per_intent[example.intent][0] += detection.intent == example.intent
        per_intent[example.intent][1] += 1
    total = len(examples)
    print(f"\n== {name}: {total} messages")
    print(f"{'priority':<12}{'precision':>10}{'recall':>8}{'F1':>8}{'support':>9}")
    for level in Priority:
        hits = confusion[level, level]
        predicted = sum(n for (_, got), n in confusion.items() if got == level)
        support = sum(n for (want, _), n in confusion.items() if want == level)
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        print(f"{level.name:<12}{precision:>10.3f}{recall:>8.3f}{f1:>8.3f}{support:>9}")
    accuracy = sum(confusion[level, level] for level in Priority) / total
    urgent = sum(n for (want, _), n in confusion.items() if want == Priority.URGENT)
    print(f"3-class priority accuracy {accuracy:.3f} (target >= 0.90)")
    print(
        f"priority-0 recall {confusion[Priority.URGENT, Priority.URGENT] / urgent:.3f}"
        " (target >= 0.97)"
    )
    correct = sum(hits for hits, _ in per_intent.values())
    print(f"intent accuracy {correct / total:.3f}")
    if name.startswith("Bitext"):
        print(f"{'intent':<28}{'accuracy':>9}{'n':>6}")
        for intent in INTENTS:
            hits, count = per_intent[intent]
            if count:
                print(f"{intent:<28}{hits / count:>9.3f}{count:>6}")


def per_text_microseconds(
    call: Callable[[str], object], texts: Sequence[str], number: int, repeat: int
) -> list[float]:
    """For each text, the best of ``repeat`` timings of ``number`` calls, in µs per call."""
    costs = []
    for text in texts:
        timer = timeit.Timer(partial(call, text))
        costs.append(min(timer.repeat(repeat=repeat, number=number)) / number * 1e6)
    return sorted(costs)


def report_cost(texts: Sequence[str], number: int, repeat: int) -> None:
    detector = PriorityDetector()
    trivial = re.compile(r"order")

    def baseline(text: str) -> object:
        return trivial.search(text.lower())

    clear_memos()
    started = time.perf_counter()
    for text in texts:
        detector.detect(text)
    cold = (time.perf_counter() - started) / len(texts) * 1e6

    detect = per_text_microseconds(detector.detect, texts, number, repeat)
    base = per_text_microseconds(baseline, texts, number, repeat)
    p99 = int(len(texts) * 0.99)
    print(f"\n== cost over {len(texts)} Bitext texts (best of {repeat} x {number} calls each)")
    print(f"{'':<38}{'median µs':>10}{'p99 µs':>9}")
    print(f"{'PriorityDetector.detect':<38}{median(detect):>10.2f}{detect[p99]:>9.2f}")
    print(f"{'baseline: lower() + one re.search':<38}{median(base):>10.2f}{base[p99]:>9.2f}")
    print(f"detect / baseline (median): {median(detect) / median(base):.1f}x; target <= 20 µs")
    print(f"cold first pass (empty word memo): mean {cold:.2f} µs per message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings per text")
    args = parser.parse_args()

    bitext_path = Path(os.environ.get("PEAKDESK_BITEXT_CSV", DEFAULT_BITEXT))
    if not bitext_path.is_file():
        sys.exit(f"Bitext file not found: {bitext_path} (set PEAKDESK_BITEXT_CSV)")
    bitext = load_examples(bitext_path, "instruction")
    heldout = load_examples(HELDOUT, "text")

    detector = PriorityDetector()
    report_quality(f"Bitext ({bitext_path.name})", bitext, detector)
    report_quality(f"held-out ({HELDOUT.name})", heldout, detector)
    report_cost([example.text for example in bitext], args.number, args.repeat)


if __name__ == "__main__":
    main()
