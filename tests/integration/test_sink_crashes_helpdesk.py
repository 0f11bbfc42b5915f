"""The sink killed with SIGKILL 20 times on the help desk catalog, local destination.

As test_sink_crashes.py on the Jira demo, on the second example catalog: uuid keys, a
composite key (replies: ``ticket_id, n`` after the tenant), tenant columns outside the key,
a self-reference. The source, read with SQL, is the truth: the lake must hold every row of
the run's tenants exactly once, by its full record key, with no temporary left, every file
within its caps and the manifest describing exactly the files read back."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluiceway.common.catalog import Catalog
from tests.conftest import Cli, Stack, isolated, settings_env
from tests.integration.helpdesk_truth import typed_keys, write_catalog
from tests.integration.test_sink_crashes import (
    ROTATE,
    Source,
    check_lake,
    lake_of,
    run_processor,
    sink_through_kills,
)

pytestmark = pytest.mark.integration
TENANTS = ("1", "2")
# 4 entities x 2 tenants x 60,000: 480,000 events for 20 short lives of the sink. Since the
# sink decodes the help desk's uuids and numerics in batches, 240,000 events (30,000 a
# tenant) were done after 16 kills; lives now also end at most 0.1 s after the first file
ROWS_PER_TENANT = 60_000
MAX_KILL_DELAY_S = 0.1


@pytest.fixture(scope="module")
def helpdesk(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[Source, Catalog]
]:  # fmt: skip
    """The help desk tables seeded for two tenants and captured once."""
    path = tmp_path_factory.mktemp("helpdesk") / "catalog.yaml"
    catalog = write_catalog(path)
    for kafka, pg, _cli in isolated(local_stack):
        cli = Cli(settings_env(kafka, pg, {"SLUICEWAY_PG_CATALOG": str(path)}))
        started = time.monotonic()
        cli("source", "seed", "--catalog", str(path), "--tenants", str(len(TENANTS)),
            "--rows-per-tenant", str(ROWS_PER_TENANT), "--seed", "21", timeout=900)  # fmt: skip
        seeded = time.monotonic()
        cli("capture", "--snapshot-only", timeout=600)
        src = Source(kafka, pg, cli, typed_keys(pg, catalog, TENANTS))
        print(
            f"\nhelpdesk source: {src.events} events; seed {seeded - started:.1f}s, "
            f"capture {time.monotonic() - seeded:.1f}s"
        )
        assert src.events == len(catalog.names) * len(TENANTS) * ROWS_PER_TENANT
        yield src, catalog


@pytest.mark.timeout(1200)
def test_sink_killed_20_times_writes_every_helpdesk_row_exactly_once(
    helpdesk: tuple[Source, Catalog], local_stack: Stack, tmp_path: Path
) -> None:
    source, catalog = helpdesk
    spec = tmp_path / "spec.yaml"
    lake = tmp_path / "lake"
    spec.write_text(f"tenants: {list(TENANTS)}\ndestination: {lake}\n")
    run = source.cli.json("export", "start", "--spec", str(spec), "--no-launch")
    etl_id = run["etl_id"]
    run_processor(source, etl_id, tmp_path, timeout=600)
    rng = random.Random(etl_id)
    sink = sink_through_kills(source, etl_id, tmp_path, rng, MAX_KILL_DELAY_S)
    keys = {e: catalog.entity(e).record_key for e in catalog.names}
    totals = check_lake(lake_of(str(lake), local_stack.s3), etl_id, source, keys)
    rotations = len(ROTATE.findall(sink.log.read_bytes()))
    print(f"\nhelpdesk run {etl_id}: {totals}, {rotations} rotations logged")
    for why in sink.kill_log:
        print(f"  {why}")
