"""A full run reads the change topics once, and its first output does not wait for more
processors: the same data exported with one processor, then with two started together.

Every worker reports (``sluiceway process --json``) the change records its consumer handed
it in all, and those before its first output. With two versions of every issue and deleted
comments on the topics, the test asserts:

- one processor reads each record of the run's ranges at most once (a pass to find each
  key's last version and a pass to forward it read them twice);
- two processors together read at most half as much again (a worker that takes a partition
  over re-reads the part already done for its keys), not each everything;
- the run's first output comes after at most one chunk of reading, with one processor as
  with two;
- both runs hold exactly the source's rows once each, with the source's values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli
from tests.integration.capture_harness import CaptureProcess, settings_for_capture
from tests.integration.test_capture import snapshot_done, wait_caught_up
from tests.integration.test_scale_out import (
    announce,
    check_full,
    manifest_files,
    reconstructed,
    source_keys,
    source_summaries,
    update_everything,
)
from tests.polling import wait_for

pytestmark = pytest.mark.integration
CHUNK = 2_000


def run_workers(cli: Cli, run: RunRecord, processors: int, workdir: Path) -> list[dict[str, Any]]:
    """Start ``processors`` processors and one sink together; every processor's statistics."""
    env = {**cli.env, "SLUICEWAY_PROCESSOR_FULL_CHUNK": str(CHUNK)}
    logs = [workdir / f"{run.etl_id}-p{n}.out" for n in range(processors)]
    command = [sys.executable, "-m", "sluiceway.cli"]
    procs = [
        subprocess.Popen(
            [*command, "process", "--run", run.etl_id, "--json"],
            env=env,
            stdout=log.open("wb"),
            stderr=log.with_suffix(".log").open("wb"),
            stdin=subprocess.DEVNULL,
        )
        for log in logs
    ]
    sink_log = (workdir / f"{run.etl_id}-sink.log").open("wb")
    sink = subprocess.Popen(
        [*command, "sink", "--run", run.etl_id],
        env=env,
        stdout=sink_log,
        stderr=sink_log,
        stdin=subprocess.DEVNULL,
    )
    try:
        codes = [p.wait(300) for p in (*procs, sink)]
    finally:
        for p in (*procs, sink):
            if p.poll() is None:
                p.kill()
    assert codes == [0] * (processors + 1), codes
    stats = []
    for log in logs:
        lines = [x for x in log.read_text(errors="replace").splitlines() if "{" in x]
        assert lines, f"{log} printed no statistics"
        stats.append(json.loads(lines[-1][lines[-1].index("{") :]))
    return stats


def run_range(run: RunRecord) -> int:
    """Offsets in the run's ranges: at least the number of records in them."""
    return sum(cut - run.start[t][p] for t, parts in run.cut.items() for p, cut in parts.items())


def test_a_full_run_reads_once_and_starts_after_one_chunk_with_one_or_two_processors(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "3", "--issues-per-tenant", "1500", "--seed", "3",
        timeout=600)  # fmt: skip
    slot = f"sw_{unique}"
    capture = CaptureProcess(settings_for_capture(cli.env, slot), tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 300, "the initial snapshot")
        update_everything(source_db)  # a second version of every issue, deleted comments
        wait_caught_up(source_db, slot, capture, timeout=300)
    finally:
        capture.stop()
    truth = source_keys(source_db)
    found: dict[int, list[dict[str, Any]]] = {}
    for processors in (1, 2):
        lake = tmp_path / f"lake-{processors}"
        run = announce(kafka, lake, "full")
        total = run_range(run)
        assert total > 10 * CHUNK, total  # or one chunk would be most of the run
        found[processors] = stats = run_workers(cli, run, processors, tmp_path)
        check_full(lake, run, truth)
        assert set(manifest_files(lake, run.etl_id)) >= {"issue", "comment"}
        assert set(reconstructed(lake, "issue")) == truth["issue"]
        assert reconstructed(lake, "issue", "summary") == source_summaries(source_db)
        read = sum(s["read"] for s in stats)
        # one worker: each record once (its consumer may read a little past a chunk's end)
        limit = total * 1.05 if processors == 1 else 1.5 * found[1][0]["read"]
        assert read <= limit, (processors, read, total, stats)
        first = min(s["read_before_first_output"] for s in stats if s["read_before_first_output"])
        assert first <= 2 * CHUNK, (processors, first, stats)
