"""Run ids that never collide, the PII key's fingerprint, and cancel's check of stale pids."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluiceway.common.errors import ConfigError
from sluiceway.common.fingerprint import matches, secret_fingerprint
from sluiceway.common.runs import etl_id_time, new_etl_id
from sluiceway.common.settings import SECRET_ENV
from sluiceway.common.spec import parse_spec
from sluiceway.control.registry import stop_local_workers
from sluiceway.control.runner import LaunchMode, check_remote_secret
from tests.polling import wait_for

ETL_ID = "20261122T101500Z-0123456789abcdef"


def test_ids_started_in_one_second_are_unique_and_keep_their_shape() -> None:
    moment = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    ids = [new_etl_id(moment) for _ in range(50_000)]
    # 16 random bits collided within a few hundred ids; 64 bits make 50,000 safe
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"20261122T101500Z-[0-9a-f]{16}", i) for i in ids)
    assert {etl_id_time(i) for i in ids} == {moment}


def test_the_fingerprint_names_the_key_without_revealing_it() -> None:
    one, two = secret_fingerprint("key-one-secret"), secret_fingerprint("key-two-secret")
    assert one == secret_fingerprint("key-one-secret") and one != two
    assert re.fullmatch(r"[0-9a-f]{32}", one)
    assert "key-one" not in one
    assert matches(one, "key-one-secret")
    assert not matches(one, "key-two-secret") and not matches(one, None)


@pytest.mark.parametrize("mode", ["pool", None])
def test_a_key_the_workers_cannot_get_is_refused(
    mode: LaunchMode | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_spec({"tenants": ["t1"], "destination": "/tmp/lake", "pii_secret": "spec-key"})
    who = "the pools" if mode == "pool" else "workers started elsewhere"
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"cannot reach {who}.*has no {SECRET_ENV}") as err:
        check_remote_secret(spec, mode)
    monkeypatch.setenv(SECRET_ENV, "workers-key")
    with pytest.raises(ConfigError, match="has another key") as other:
        check_remote_secret(spec, mode)
    said = f"{err.value} {other.value}"
    assert "spec-key" not in said and "workers-key" not in said
    monkeypatch.setenv(SECRET_ENV, "spec-key")
    check_remote_secret(spec, mode)  # the workers' key: accepted, and checked by fingerprint
    check_remote_secret(spec.model_copy(update={"pii_secret": None}), mode)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    # a session of its own, like a launched worker: cancel signals the process group; it
    # waits for a signal, and ends by itself after 120 s (SIGALRM) if the test left it
    proc = subprocess.Popen(
        [sys.executable, "-c", "import signal; signal.alarm(120); signal.pause()", *args],
        start_new_session=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    # Popen can return while the exec is still under way and /proc shows no arguments yet
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    wait_for(lambda: args[-1].encode() in cmdline.read_bytes(), 10, "the process to start")
    return proc


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_cancel_leaves_a_process_that_reuses_a_stale_pid_alone(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    unrelated = _spawn("some", "other", "program")
    other_run = _spawn("-m", "sluiceway.cli", "sink", "--run", "20261122T101500Z-ffffffffffffffff")
    spawned += [unrelated, other_run]
    (tmp_path / "process.pid").write_text(str(unrelated.pid))
    (tmp_path / "sink.pid").write_text(str(other_run.pid))
    assert stop_local_workers(tmp_path, ETL_ID) == []
    with pytest.raises(subprocess.TimeoutExpired):
        unrelated.wait(1.0)
    assert other_run.poll() is None


def test_cancel_stops_the_runs_own_workers(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    workers = {s: _spawn("-m", "sluiceway.cli", s, "--run", ETL_ID) for s in ("process", "sink")}
    spawned += workers.values()
    for stage, proc in workers.items():
        (tmp_path / f"{stage}.pid").write_text(str(proc.pid))
    (tmp_path / "gone.pid").write_text("999999999")
    (tmp_path / "junk.pid").write_text("not a pid")
    assert sorted(stop_local_workers(tmp_path, ETL_ID)) == sorted(p.pid for p in workers.values())
    wait_for(lambda: all(p.poll() is not None for p in workers.values()), 10, "workers to stop")
