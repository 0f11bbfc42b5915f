"""`export start` fails fast, with one clear line, on the mistakes users make."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Stack, isolated

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def captured_cli(local_stack: Stack) -> Iterator[Cli]:
    """One small captured source for the module: its tests only read it (each start they
    make is refused before a run is announced)."""
    for _kafka, _pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "5")
        cli("capture", "--snapshot-only")
        yield cli


def _error_line(proc_stderr: str) -> str:
    lines = [line for line in proc_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc_stderr
    return lines[0]


def test_unknown_tenant(captured_cli: Cli, tmp_path: Path) -> None:
    proc = captured_cli(
        "export", "start", "--tenant", "nobody", "--dest", str(tmp_path), check=False
    )
    assert proc.returncode == 3
    line = _error_line(proc.stderr)
    assert "tenants[0]: unknown tenant 'nobody' (known: tenant-001)" in line


def test_destination_not_writable(captured_cli: Cli, tmp_path: Path) -> None:
    # A path below a regular file can never be created, even by root (who ignores modes).
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "lake"
    proc = captured_cli(
        "export", "start", "--tenant", "tenant-001", "--dest", str(target), check=False
    )
    assert proc.returncode == 3
    line = _error_line(proc.stderr)
    assert f"destination {target} (" in line and "is not writable" in line


def test_unknown_entity(captured_cli: Cli, tmp_path: Path) -> None:
    proc = captured_cli(
        "export",
        "start",
        "--tenant",
        "tenant-001",
        "--entities",
        "issue,epic",
        "--dest",
        str(tmp_path),
        check=False,
    )
    assert proc.returncode == 3
    line = _error_line(proc.stderr)
    assert "entities[1]: 'epic' is not one of project, user, issue, comment, worklog" in line


def test_stack_down(cli: Cli, tmp_path: Path) -> None:
    # A port nothing listens on stands for a stopped broker, without stopping the shared stack.
    down = Cli({**cli.env, "SLUICEWAY_KAFKA_PORT": "1"})
    proc = down(
        "export",
        "start",
        "--tenant",
        "tenant-001",
        "--dest",
        str(tmp_path),
        check=False,
        timeout=60,
    )
    assert proc.returncode == 4
    line = _error_line(proc.stderr)
    assert "Kafka at 127.0.0.1:1 does not answer" in line and "sluiceway stack up" in line
