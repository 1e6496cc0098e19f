"""Every metric peakdesk exports is documented in the README's Metrics section, as exposed.

Names come from a real registry (``collect()``) with the exposition's naming rules: a counter
is exposed as ``<name>_total``, a histogram as ``<name>_bucket``/``_sum``/``_count`` and is
documented under its base name. A metric added without a README row fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from core.metrics import Metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_name(family_name: str, family_type: str) -> str:
    """The name a family is documented (and queried) by."""
    return f"{family_name}_total" if family_type == "counter" else family_name


def exported() -> dict[str, tuple[str, frozenset[str]]]:
    """``{documented name: (type, label names)}`` of every metric a process exports."""
    metrics = Metrics()
    families = {
        documented_name(family.name, family.type): family.type
        for family in metrics.registry.collect()
    }
    # A labelled family without children yields no samples to read labels from: ask the
    # metric objects themselves.
    labels = {
        documented_name(m._name, str(m._type)): frozenset(m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    return {name: (kind, labels.get(name, frozenset())) for name, kind in families.items()}


def metrics_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Metrics")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def documented_rows() -> dict[str, tuple[str, frozenset[str]]]:
    """``{metric: (type, labels)}`` from the section's table, whose columns are metric, type,
    labels, meaning, alert on."""
    rows = {}
    for line in metrics_section().splitlines():
        if not line.startswith("| `peakdesk_"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 5 and all(cells[3:]), f"metric, type, labels, meaning, alert: {line}"
        name, kind, labels = cells[0].strip("`"), cells[1], cells[2]
        rows[name] = (kind, frozenset(x.strip() for x in labels.split(",") if x.strip()))
    return rows


def test_every_exported_metric_has_a_row_in_the_readme_metrics_section() -> None:
    missing = sorted(set(exported()) - set(documented_rows()))
    assert not missing, f"document these in README.md's Metrics section: {missing}"


def test_the_readme_rows_give_each_metric_its_real_type_and_labels() -> None:
    documented = documented_rows()
    wrong = {
        name: {"exported": actual, "documented": documented[name]}
        for name, actual in exported().items()
        if name in documented and documented[name] != actual
    }
    assert not wrong, f"README.md's Metrics rows disagree with core/metrics.py: {wrong}"


def test_the_readme_documents_no_metric_that_does_not_exist() -> None:
    stale = sorted(set(documented_rows()) - set(exported()))
    assert not stale, f"README.md documents metrics nobody exports: {stale}"


def test_the_naming_rules_match_what_metrics_serves() -> None:
    """The ``_total`` rule above is what the exposition really says, on a live sample."""
    metrics = Metrics()
    metrics.dead_letters.inc()
    metrics.llm_latency.observe(0.2)
    text = metrics.render().decode()
    assert "peakdesk_dead_letters_total 1.0" in text
    assert "peakdesk_llm_latency_seconds_bucket" in text
    assert exported()["peakdesk_dead_letters_total"][0] == "counter"
    assert exported()["peakdesk_llm_latency_seconds"][0] == "histogram"
