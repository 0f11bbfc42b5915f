"""docker-compose.yml mirrors the local stack: same servers, logical WAL, KRaft Kafka."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sluiceway.devstack import SERVERS
from tests.repo import ROOT

SLUICEWAY_SERVICES = ("capture", "processor", "sink", "serve", "sluiceway")
# the long-running services and the port their health server listens on
HEALTH_PORTS = {"capture": 9400, "processor": 9401, "sink": 9402, "serve": 18400}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_names_every_server_of_the_local_stack(services: dict[str, Any]) -> None:
    missing = [name for name in SERVERS if name not in services]
    assert not missing, f"docker-compose.yml lacks {missing}"


def test_postgres_runs_with_logical_wal_and_the_decoding_plugin(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert "wal_level=logical" in _command(postgres)
    dockerfile = (ROOT / postgres["build"] / "Dockerfile").read_text()
    assert "FROM postgres:15" in dockerfile
    assert "postgresql-15-wal2json" in dockerfile  # the plugin producers/slot.py decodes with


def test_kafka_runs_kraft_combined_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = kafka["environment"]
    assert str(kafka["image"]).startswith("apache/kafka:4.")
    assert set(str(env["KAFKA_PROCESS_ROLES"]).split(",")) == {"broker", "controller"}
    assert "KAFKA_NODE_ID" in env
    assert "CONTROLLER" in str(env["KAFKA_CONTROLLER_LISTENER_NAMES"])
    assert str(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).startswith(f"{env['KAFKA_NODE_ID']}@")
    assert not any("ZOOKEEPER" in key for key in env)
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == "1"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == "1"


@pytest.mark.parametrize("name", SLUICEWAY_SERVICES)
def test_sluiceway_services_point_at_compose_servers(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert "build" in service
    assert _command(service)
    env = service["environment"]
    assert str(env["SLUICEWAY_KAFKA_BOOTSTRAP"]).split(":")[0] == "kafka"
    assert env["SLUICEWAY_PG_HOST"] == "postgres"
    assert "//s3proxy:" in str(env["SLUICEWAY_S3_ENDPOINT"])


def test_dockerfile_installs_the_wheel_and_nothing_else() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    build, runtime = dockerfile.split("FROM python:3.11-slim AS build")[1].split("\nFROM ")
    assert "pip wheel --no-deps --wheel-dir /wheels ." in build
    assert runtime.startswith("python:3.11-slim")
    assert "pip install /wheels/*.whl" in runtime
    assert "COPY schemas" not in runtime and "COPY deploy" not in runtime  # shipped in the wheel


@pytest.mark.parametrize("name", HEALTH_PORTS)
def test_workers_are_healthchecked_on_readyz(services: dict[str, Any], name: str) -> None:
    service = services[name]
    port = HEALTH_PORTS[name]
    assert str(port) in _command(service)
    probe = " ".join(service["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe
    env = service["environment"]
    assert env["SLUICEWAY_HEALTH_HOST"] == "0.0.0.0"  # Prometheus scrapes from its container
    assert env["SLUICEWAY_LAUNCH"] == "pool"


def test_pools_run_the_workers(services: dict[str, Any]) -> None:
    assert "--pool" in _command(services["processor"])
    assert "--pool" in _command(services["sink"])
    assert services["processor"]["deploy"]["replicas"] == 2
    assert "SLUICEWAY_API_TOKEN" in services["serve"]["environment"]


def test_prometheus_and_grafana_are_provisioned(services: dict[str, Any]) -> None:
    root = ROOT
    mounts = {
        str(v).split(":")[0]: str(v).split(":")[1]
        for name in ("prometheus", "grafana")
        for v in services[name]["volumes"]
    }
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = yaml.safe_load(
        (root / "deploy/grafana/provisioning/dashboards/sluiceway.yml").read_text()
    )
    folder = dashboards["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/sluiceway-dashboard.json"].startswith(folder + "/")
    for host_path in mounts:
        assert (root / host_path).exists(), host_path
