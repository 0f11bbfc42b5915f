"""Pure parts of the local stack: rendered config files, tool lookup, status records."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sluiceway.common.errors import ToolMissingError
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings, StackSettings
from sluiceway.devstack import SERVERS, ServerStatus, servers, tools
from sluiceway.devstack.kafka import random_cluster_id, render_server_properties
from sluiceway.devstack.postgres import server_options
from sluiceway.devstack.s3proxy import render_s3proxy_conf


def _props(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_server_properties_combined_kraft_on_configured_ports(tmp_path: Path) -> None:
    kafka = KafkaSettings(host="127.0.0.1", port=29092, controller_port=29093)
    props = _props(render_server_properties(kafka, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str((tmp_path / "data").resolve())
    assert Path(props["log.dirs"]).is_absolute()


def test_server_properties_single_node_replication(tmp_path: Path) -> None:
    props = _props(render_server_properties(KafkaSettings(), tmp_path))
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "1000"
    assert props["log.cleaner.enable"] == "true"
    assert props.get("auto.create.topics.enable", "true") != "false"


def test_cluster_id_looks_like_kafka_random_uuid() -> None:
    ids = {random_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert "=" not in cluster_id


def test_s3proxy_conf_uses_settings_keys_and_endpoint(tmp_path: Path) -> None:
    s3 = S3Settings(port=28080, access_key="id-1", secret_key="secret-1")
    props = _props(render_s3proxy_conf(s3, tmp_path / "data"))
    assert props["s3proxy.endpoint"] == "http://127.0.0.1:28080"
    assert props["s3proxy.authorization"] == "aws-v2-or-v4"
    assert props["s3proxy.identity"] == "id-1"
    assert props["s3proxy.credential"] == "secret-1"
    assert props["jclouds.provider"] in ("filesystem-nio2", "filesystem")
    assert props["jclouds.filesystem.basedir"] == str((tmp_path / "data").resolve())


def test_postgres_options_enable_logical_decoding(tmp_path: Path) -> None:
    opts = " ".join(server_options(PostgresSettings(port=25432), tmp_path / "socket"))
    assert "-c listen_addresses=127.0.0.1" in opts
    assert "-p 25432" in opts
    assert f"-k {tmp_path / 'socket'}" in opts
    for setting in ("wal_level=logical", "max_replication_slots=16", "max_wal_senders=16"):
        assert f"-c {setting}" in opts


def test_missing_java_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError) as info:
        tools.find_java()
    assert info.value.tool == "java"
    assert "apt-get install -y openjdk-17-jre-headless" in str(info.value)
    assert str(info.value).startswith("java not found; install it with: ")


def test_missing_mvn_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kw: None)
    with pytest.raises(ToolMissingError, match="apt-get install -y maven"):
        tools.find_mvn()


def test_missing_postgres_names_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kw: None)
    monkeypatch.setattr(tools, "PG_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    with pytest.raises(ToolMissingError, match="apt-get install -y postgresql"):
        tools.find_pg_bindir()


def test_postgres_bindir_found_by_glob(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for major in ("13", "15"):
        bindir = tmp_path / major / "bin"
        bindir.mkdir(parents=True)
        for program in tools.PG_PROGRAMS:
            (bindir / program).touch()
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kw: None)
    monkeypatch.setattr(tools, "PG_BIN_GLOB", str(tmp_path / "*" / "bin"))
    assert tools.find_pg_bindir() == tmp_path / "15" / "bin"


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("garbage", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert tools.java_major(output) == major


def test_servers_match_names(tmp_path: Path) -> None:
    found = servers(StackSettings(home=tmp_path), KafkaSettings(), PostgresSettings(), S3Settings())
    assert tuple(server.name for server in found) == SERVERS


def test_server_status_to_dict_is_json_ready(tmp_path: Path) -> None:
    status = ServerStatus("kafka", True, 42, "127.0.0.1:19092", tmp_path, tmp_path / "k.log")
    assert status.to_dict() == {
        "name": "kafka",
        "running": True,
        "pid": 42,
        "address": "127.0.0.1:19092",
        "data_dir": str(tmp_path),
        "log_file": str(tmp_path / "k.log"),
    }


def test_missing_wal2json_names_the_package(tmp_path: Path) -> None:
    bindir = tmp_path / "15" / "bin"
    bindir.mkdir(parents=True)
    with pytest.raises(ToolMissingError, match="apt-get install -y postgresql-15-wal2json"):
        tools.check_wal2json(bindir)
    (tmp_path / "15" / "lib").mkdir()
    (tmp_path / "15" / "lib" / "wal2json.so").write_bytes(b"")
    tools.check_wal2json(bindir)
