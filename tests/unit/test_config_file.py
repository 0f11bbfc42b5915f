"""sluiceway.yaml: read by every settings class, overridden by the environment, checked for
unknown keys, shown with sources and secrets redacted; docs/configuration.md kept current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import KafkaSettings, PostgresSettings, StackSettings
from sluiceway.config import check_file, merged
from sluiceway.config_docs import render
from sluiceway.sinks.config import SinkSettings
from sluiceway.sinks.guard_config import GuardSettings
from tests.repo import ROOT

CONFIG = """
kafka:
  port: 29092
  topic_prefix: file.
pg:
  password: from-the-file
sink:
  compression: gzip
  min_free_bytes: 7
launch: pool
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SLUICEWAY_KAFKA_PORT", "SLUICEWAY_KAFKA_TOPIC_PREFIX", "SLUICEWAY_PG_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "sluiceway.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("SLUICEWAY_CONFIG", str(path))
    return path


def test_each_class_reads_its_section(config: Path) -> None:
    assert KafkaSettings().port == 29092
    assert KafkaSettings().topic_prefix == "file."
    assert PostgresSettings().password.get_secret_value() == "from-the-file"
    # two classes share the sink section, each takes only its own keys
    assert SinkSettings().compression == "gzip"
    assert GuardSettings().min_free_bytes == 7


def test_the_working_directory_file_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICEWAY_CONFIG", raising=False)
    monkeypatch.delenv("SLUICEWAY_KAFKA_PORT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert KafkaSettings().port == 19092
    (tmp_path / "sluiceway.yaml").write_text("kafka: {port: 39092}\n")
    assert KafkaSettings().port == 39092


def test_environment_overrides_the_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_KAFKA_PORT", "1234")
    assert KafkaSettings().port == 1234
    assert KafkaSettings().topic_prefix == "file."


def test_a_secret_comes_from_a_file_variable_or_a_secrets_dir(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pg-password"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("SLUICEWAY_PG_PASSWORD_FILE", str(secret))
    assert PostgresSettings().password.get_secret_value() == "from-a-file"
    monkeypatch.delenv("SLUICEWAY_PG_PASSWORD_FILE")
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "SLUICEWAY_PG_PASSWORD").write_text("from-the-dir")
    monkeypatch.setenv("SLUICEWAY_SECRETS_DIR", str(folder))
    assert PostgresSettings().password.get_secret_value() == "from-the-dir"


def test_an_unreadable_secret_file_is_one_line_naming_the_variable(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICEWAY_PG_PASSWORD_FILE", "/nonexistent/pg")
    with pytest.raises(ConfigError, match="SLUICEWAY_PG_PASSWORD_FILE=/nonexistent/pg: cannot"):
        PostgresSettings()


def test_home_reads_sluiceway_home_and_the_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICEWAY_HOME", raising=False)
    monkeypatch.setenv("SLUICEWAY_STACK_HOME", "/old")
    assert StackSettings().home == Path("/old")
    monkeypatch.setenv("SLUICEWAY_HOME", "/new")
    assert StackSettings().home == Path("/new")


def test_home_defaults_outside_site_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SLUICEWAY_HOME", "SLUICEWAY_STACK_HOME", "SLUICEWAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert StackSettings().home == tmp_path / "data" / "sluiceway"
    assert StackSettings.for_dev_stack().home == tmp_path / ".sluiceway"
    (tmp_path / ".sluiceway").mkdir()  # a dev stack lives here: its runs log here too
    assert StackSettings().home == tmp_path / ".sluiceway"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("kafka:\n  prot: 1\n", "unknown key 'kafka.prot'; did you mean 'kafka.port'?"),
        ("kafak:\n  port: 1\n", "unknown key 'kafak'; did you mean 'kafka'?"),
        ("lanch: pool\n", "unknown key 'lanch'; did you mean 'launch'?"),
        ("sink:\n  min_free_byte: 1\n", "did you mean 'sink.min_free_bytes'?"),
    ],
)
def test_an_unknown_key_names_the_nearest_valid_one(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "sluiceway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        check_file(path)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_mappings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sluiceway.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        check_file(path)


def test_show_names_each_source_and_redacts_secrets(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICEWAY_KAFKA_PORT", "1234")
    secret = tmp_path / "s3-secret"
    secret.write_text("very-secret-key")
    monkeypatch.setenv("SLUICEWAY_S3_SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("SLUICEWAY_S3_ACCESS_KEY", "AKIA-id")  # static keys come in pairs
    values = {v.key: v for v in merged()}
    assert (values["kafka.port"].value, values["kafka.port"].source) == (
        1234, "env SLUICEWAY_KAFKA_PORT",
    )  # fmt: skip
    assert values["kafka.topic_prefix"].source == f"config {config}"
    assert values["kafka.host"].source == "default"
    assert values["pg.password"].value == "**********"
    assert values["pg.password"].source == f"config {config}"
    assert values["s3.secret_key"].value == "**********"
    assert values["s3.secret_key"].source == "file named by SLUICEWAY_S3_SECRET_KEY_FILE"
    assert values["stack.home"].env == "SLUICEWAY_HOME"


def test_config_show_json_never_prints_a_secret(config: Path, tmp_path: Path) -> None:
    command = ["--config", str(config), "config", "show", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "sluiceway.cli", *command],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert "from-the-file" not in proc.stdout
    payload = json.loads(proc.stdout)
    assert payload["config_file"] == str(config)
    assert {"key": "sink.compression", "env": "SLUICEWAY_SINK_COMPRESSION", "value": "gzip",
            "source": f"config {config}"} in payload["settings"]  # fmt: skip


def test_configuration_docs_are_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), (
        "docs/configuration.md is stale; regenerate it with: "
        "make docs (sluiceway config docs --output docs/configuration.md)"
    )


def test_configuration_docs_name_every_setting() -> None:
    text = render()
    for value in merged():
        assert f"`{value.key}`" in text and f"`{value.env}`" in text
