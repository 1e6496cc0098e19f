"""deploy/ and docker-compose.yml stay in step with the code: the dashboard and the alert
rules query only series a process exports, and Prometheus scrapes the ports the compose
services listen on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bots.settings import Settings
from tests.bots.test_metrics_docs import exported

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "peakdesk.json"
# Series Prometheus makes itself, and target labels it adds to every series it scrapes.
PROMETHEUS_SERIES = {"up": frozenset({"job", "instance"})}
TARGET_LABELS = frozenset({"job", "instance"})
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def exposed_series() -> dict[str, frozenset[str]]:
    """``{series name: label names}`` of what ``/metrics`` can show, as PromQL sees it."""
    series = dict(PROMETHEUS_SERIES)
    for name, (kind, labels) in exported().items():
        labels = labels | TARGET_LABELS
        if kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series


def dashboard_exprs() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def alert_exprs() -> list[tuple[str, str]]:
    groups = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def check_expr(expr: str, series: dict[str, frozenset[str]]) -> list[str]:
    """What in one PromQL expression names a series or a label that is not exported."""
    problems = []
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values and regexes are not names
    # A name right before a selector or a range is a series; so is any peakdesk_ name.
    metrics = set(re.findall(rf"({NAME})\s*[{{\[]", expr) + re.findall(r"\b(peakdesk_\w+)", expr))
    if not any(m.startswith("peakdesk_") or m in PROMETHEUS_SERIES for m in metrics):
        problems.append("reads no peakdesk series")
    for metric in metrics:
        if metric not in series:
            problems.append(f"{metric} is not exported")
    for metric, matchers in re.findall(rf"({NAME})\s*\{{([^}}]*)\}}", expr):
        for label in re.findall(rf"({NAME})\s*[=!]~?", matchers):
            if metric in series and label not in series[metric]:
                problems.append(f"{metric} has no label {label}")
    known = frozenset().union(*(series.get(m, frozenset()) for m in metrics))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            if label not in known:
                problems.append(f"grouping by {label}, a label of none of {sorted(metrics)}")
    return problems


@pytest.mark.parametrize(
    ("source", "exprs"), [("dashboard", dashboard_exprs), ("alerts", alert_exprs)]
)
def test_every_query_reads_series_and_labels_a_process_exports(source: str, exprs: Any) -> None:
    series = exposed_series()
    wrong = {title: p for title, expr in exprs() if (p := check_expr(expr, series))}
    assert not wrong, f"{source} drifted from core/metrics.py: {wrong}"


def test_the_drift_check_itself_catches_a_wrong_name_and_a_wrong_label() -> None:
    series = exposed_series()
    assert check_expr("sum(rate(peakdesk_messages_admitted_total[1m]))", series) == []
    assert check_expr("rate(peakdesk_messages_admitted[1m])", series)  # no _total
    assert check_expr('peakdesk_queue_depth{channel="x"}', series)
    assert check_expr("sum by (source) (peakdesk_queue_depth)", series)
    assert check_expr("rate(node_cpu_seconds_total[1m]) + peakdesk_in_flight", series)
    quantile = "histogram_quantile(0.9, sum by (le, priority) (rate({}[1m])))"
    assert check_expr(quantile.format("peakdesk_queue_wait_seconds_bucket"), series) == []
    assert check_expr(quantile.format("peakdesk_queue_wait_seconds"), series)


def test_the_dashboard_shows_the_operators_questions() -> None:
    text = " ".join(expr for _, expr in dashboard_exprs())
    for needed in (
        "peakdesk_messages_admitted_total",
        "peakdesk_messages_processed_total",
        "peakdesk_queue_depth",
        "peakdesk_estimated_wait_seconds",
        "histogram_quantile(0.99, sum by (le) (rate(peakdesk_queue_wait_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(peakdesk_llm_latency_seconds_bucket",
        "peakdesk_llm_errors_total",
        "peakdesk_provider_circuit_open",
        "peakdesk_peak_level",
        "peakdesk_acknowledgements_total",
        "peakdesk_cost_per_answer_usd",
        "peakdesk_cached_token_share",
        "peakdesk_dead_letters_total",
        'source="held"',
        "peakdesk_deliveries_total",
        'reason="store_unavailable"',
    ):
        assert needed in text, needed


def test_the_dashboard_uses_the_provisioned_datasource() -> None:
    [datasource] = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in [panel, *panel.get("targets", [])]:
            if "datasource" in target:
                assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def compose() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")["services"]
    return services


def listening_port(service: dict[str, Any]) -> int | None:
    """The port a peakdesk compose service serves /metrics on, from its command."""
    command = service.get("command") or []
    if "--metrics-port" in command:
        return int(command[command.index("--metrics-port") + 1])
    if "serve" in command:
        if "--port" in command:
            return int(command[command.index("--port") + 1])
        port = (service.get("environment") or {}).get("PEAKDESK_PORT")
        default: int = Settings.model_fields["peakdesk_port"].default
        return int(port) if port is not None else default
    return None


def test_prometheus_scrapes_every_peakdesk_service_on_the_port_it_listens_on() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "5s"
    scraped = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = int(sd["port"])
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                scraped[host] = int(port)
    services = compose()
    peakdesk = {
        name: port
        for name, service in services.items()
        if (port := listening_port(service)) is not None
    }
    assert peakdesk, "no peakdesk service in docker-compose.yml"
    assert scraped == peakdesk


def test_the_monitoring_profile_mounts_the_deploy_files_where_they_are_read() -> None:
    services = compose()
    prometheus, grafana = services["prometheus"], services["grafana"]
    for service in (prometheus, grafana):
        assert service["profiles"] == ["monitoring"]
        image, _, tag = service["image"].partition(":")
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{image}: pin a version"
    mounts = {
        target: source
        for source, target, *_ in (v.split(":") for v in prometheus["volumes"] + grafana["volumes"])
    }
    config_file = next(
        arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")
    )
    assert mounts[config_file] == "./deploy/prometheus/prometheus.yml"
    for rule_file in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["rule_files"]:
        assert (ROOT / mounts[rule_file]).is_file()
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    [provider] = load_yaml(DEPLOY / "grafana/provisioning/dashboards/peakdesk.yml")["providers"]
    assert (ROOT / mounts[provider["options"]["path"]] / DASHBOARD.name).is_file()
    for name in ("redis", "gateway", "worker"):  # `docker compose up` still starts them
        assert "profiles" not in services[name]
