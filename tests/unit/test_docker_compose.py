"""docker-compose.yml mirrors the local stack: same servers, logical WAL, KRaft Kafka."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sluiceway.settings import project_root
from sluiceway.stack import SERVERS

SLUICEWAY_SERVICES = ("capture", "sluiceway")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((project_root() / "docker-compose.yml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_names_every_server_of_the_local_stack(services: dict[str, Any]) -> None:
    missing = [name for name in SERVERS if name not in services]
    assert not missing, f"docker-compose.yml lacks {missing}"


def test_postgres_runs_with_logical_wal(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert str(postgres["image"]).startswith("postgres:15")
    assert "wal_level=logical" in _command(postgres)


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


def test_dockerfile_installs_the_package() -> None:
    dockerfile = (project_root() / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
