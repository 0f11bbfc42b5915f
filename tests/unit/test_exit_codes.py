"""Exit codes a scheduler can act on, provoked through the real command (no stack needed:
the servers are pointed at a port nothing listens on). Codes 5 and 6 need a run and a
migration: tests/integration/test_installed_wheel.py and test_migrate.py provoke them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sluiceway import exit_codes


def sluiceway(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEWAY_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "sluiceway.cli", *args],
        env={**clean, **(env or {})}, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_version(tmp_path: Path) -> None:
    proc = sluiceway("--version", cwd=tmp_path)
    assert proc.returncode == exit_codes.OK
    assert proc.stdout.startswith("sluiceway ")


def test_usage_is_2(tmp_path: Path) -> None:
    proc = sluiceway("export", "start", "--no-such-option", cwd=tmp_path)
    assert proc.returncode == exit_codes.USAGE == 2


def test_a_bad_setting_is_3_and_json_with_json(tmp_path: Path) -> None:
    proc = sluiceway("export", "status", "--json", cwd=tmp_path,
                     env={"SLUICEWAY_KAFKA_PORT": "not-a-port"})  # fmt: skip
    assert proc.returncode == exit_codes.BAD_INPUT == 3, proc.stderr
    error = json.loads(proc.stdout)
    assert error["kind"] == "bad_input"
    assert "SLUICEWAY_KAFKA_PORT='not-a-port'" in error["error"]
    assert error["problems"] == [error["error"]]


def test_an_unknown_config_key_is_3_naming_the_nearest_key(tmp_path: Path) -> None:
    config = tmp_path / "sluiceway.yaml"
    config.write_text("kafka:\n  hots: broker\n")
    proc = sluiceway("config", "show", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "unknown key 'kafka.hots'; did you mean 'kafka.host'?" in proc.stderr
    as_json = sluiceway("--config", str(config), "config", "show", "--json", cwd=Path("/"))
    assert as_json.returncode == 3
    error = json.loads(as_json.stdout)
    assert error["kind"] == "bad_input"
    assert error["problems"] == ["unknown key 'kafka.hots'; did you mean 'kafka.host'?"]


def test_a_missing_config_file_is_3(tmp_path: Path) -> None:
    proc = sluiceway("--config", str(tmp_path / "nope.yaml"), "config", "show", cwd=tmp_path)
    assert proc.returncode == 3
    assert f"--config {tmp_path / 'nope.yaml'}: no such file" in proc.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_unreachable_servers_are_4(tmp_path: Path, as_json: bool) -> None:
    env = {"SLUICEWAY_KAFKA_PORT": "1", "SLUICEWAY_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "SLUICEWAY_PG_PORT": "1"}  # fmt: skip
    proc = sluiceway("check", *(["--json"] if as_json else []), cwd=tmp_path, env=env)
    assert proc.returncode == exit_codes.TRANSIENT == 4, proc.stdout + proc.stderr
    if as_json:
        report = json.loads(proc.stdout)
        assert report["kind"] == "transient" and not report["ok"]
        assert [p.split(":")[0] for p in report["problems"]] == ["kafka", "postgres"]
    else:
        failed = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
        assert len(failed) == 2
        assert "127.0.0.1:1/" in failed[1] and "SLUICEWAY_PG_" in failed[1]
