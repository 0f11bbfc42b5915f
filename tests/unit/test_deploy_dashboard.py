"""The Grafana dashboard is valid JSON and queries only metrics the workers register."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import sluiceway.processors.metrics  # registers the processor metrics
import sluiceway.producers.metrics
import sluiceway.sinks.metrics  # noqa: F401

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _registered() -> set[str]:
    names = set()
    for collector in REGISTRY.collect():
        for sample in collector.samples:
            names.add(sample.name)
        names.add(collector.name)
    return names


def _family(metric: str) -> str:
    for suffix in SUFFIXES:
        metric = metric.removesuffix(suffix)
    return metric


def test_dashboard_queries_only_registered_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "sluiceway-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {m for e in exprs for m in re.findall(r"\bsluiceway_[a-z_]+", e)}
    assert queried, "the dashboard queries no metric"
    registered = _registered()
    # a counter's family is named without _total; a labelled one has no sample until used
    unknown = {m for m in queried if m not in registered and _family(m) not in registered}
    assert not unknown, f"dashboard queries metrics no worker registers: {sorted(unknown)}"
    stages = {m.split("_")[1] for m in queried}
    assert stages == {"capture", "processor", "sink"}


def test_prometheus_config_scrapes_every_stage() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"sluiceway-capture", "sluiceway-processor", "sluiceway-sink", "sluiceway-serve"}


def test_prometheus_ports_are_the_workers_metrics_ports() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())["services"]
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            [service] = sd["names"]
            command = compose[service]["command"]
            assert command[command.index("--metrics-port") + 1] == str(sd["port"])
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                service, port = target.split(":")
                assert port in compose[service]["command"]


def test_grafana_provisioning_names_the_dashboards_datasource() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana" / "sluiceway-dashboard.json").read_text())
    assert dashboard["templating"]["list"][0]["query"] == source["type"]
