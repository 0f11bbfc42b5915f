from __future__ import annotations

import io
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sluiceway.common.catalog import Catalog, load_catalog
from sluiceway.common.codec import Codec
from sluiceway.common.errors import ConfigError
from sluiceway.common.resources import example_catalog
from sluiceway.devstack.churn import (
    ENTITY_NAMES,
    LiveKeys,
    Op,
    Planner,
    SourceState,
    ledger_lines,
    run_churn,
)
from sluiceway.devstack.churn_run import ChurnSettings, Clock, Commit, pace
from sluiceway.devstack.churn_sql import runs, updated_columns
from sluiceway.devstack.seed import DEMO_ENTITIES, Row, SeedPlan, check_demo_catalog, gen_tenant
from tests.catalogs import ENTITIES

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PLAN = SeedPlan(tenants=2, issues_per_tenant=20, seed=1)


def seeded() -> tuple[SourceState, dict[tuple[str, str, int], Row]]:
    """The planner's view of a seeded source, and every seeded row by (tenant, entity, id)."""
    state = SourceState(PLAN.tenant_ids())
    rows: dict[tuple[str, str, int], Row] = {}
    for index, tenant in enumerate(state.tenants, start=1):
        for entity, row in gen_tenant(PLAN, index):
            state.keys.setdefault((tenant, entity), []).append(row["id"])
            rows[tenant, entity, row["id"]] = row
            if entity == "project":
                state.project_keys[tenant, row["id"]] = row["key"]
    return state, rows


def plan_ops(seed: int, count: int, batch: int = 40) -> list[Op]:
    planner = Planner(random.Random(seed), seeded()[0])
    ops: list[Op] = []
    for k in range(count // batch):
        ops += planner.batch(batch, NOW + timedelta(seconds=k))
    return ops


def test_planning_is_deterministic_and_seed_dependent() -> None:
    assert plan_ops(3, 400) == plan_ops(3, 400)
    assert plan_ops(3, 400) != plan_ops(4, 400)


def test_mix_of_ops_and_entities() -> None:
    ops = plan_ops(5, 6000)
    kinds = Counter(op.op for op in ops)
    assert kinds["c"] / len(ops) == pytest.approx(0.40, abs=0.04)
    assert kinds["u"] / len(ops) == pytest.approx(0.45, abs=0.04)
    assert kinds["d"] / len(ops) == pytest.approx(0.15, abs=0.03)
    entities = Counter(op.entity for op in ops)
    assert set(entities) == set(ENTITIES)
    assert sum(entities[e] for e in ("issue", "comment", "worklog")) / len(ops) > 0.75
    assert {op.tenant_id for op in ops} == set(PLAN.tenant_ids())


def test_only_live_keys_change_and_inserts_use_fresh_ids() -> None:
    state, _ = seeded()
    live = {(t, e, i) for (t, e), ids in state.keys.items() for i in ids}
    ever = set(live)
    for op in plan_ops(6, 4000):
        key = (op.tenant_id, op.entity, op.id)
        if op.op == "c":
            assert key not in ever, f"insert reuses {key}"
            assert op.id > max(i for t, e, i in ever if (t, e) == key[:2])
            live.add(key)
            ever.add(key)
        else:
            assert key in live, f"{op.op} of a key that is not live: {key}"
            if op.op == "d":
                live.remove(key)


def test_new_rows_reference_live_parents_and_users() -> None:
    state, _ = seeded()
    live = {(t, e, i) for (t, e), ids in state.keys.items() for i in ids}
    for op in plan_ops(7, 4000):
        key = (op.tenant_id, op.entity, op.id)
        row = op.values or {}
        if op.op == "c":
            parent = {"comment": "issue", "worklog": "issue", "issue": "project"}.get(op.entity)
            if parent:
                assert (op.tenant_id, parent, row[f"{parent}_id"]) in live
            for column in ("author_id", "reporter_id", "creator_id", "lead_id"):
                if row.get(column) is not None:
                    assert (op.tenant_id, "user", row[column]) in live
            live.add(key)
        elif op.op == "d":
            live.remove(key)


def test_new_rows_and_updates_fit_the_avro_schema() -> None:
    codec = Codec()
    _, rows = seeded()
    base = {entity: row for (_, entity, _), row in rows.items()}
    seen = set()
    for op in plan_ops(8, 3000):
        if op.op == "d":
            continue
        assert op.values is not None
        assert op.values["updated"] == NOW or op.values["updated"] > NOW
        after = op.values if op.op == "c" else {**base[op.entity], **op.values, "id": op.id}
        event = {
            "tenant_id": op.tenant_id,
            "entity": op.entity,
            "entity_id": op.id,
            "op": op.op,
            "position": 1,
            "source_ts": NOW,
            "snapshot": False,
            "after": after,
        }
        assert codec.decode(codec.encode(event))["after"] == after
        seen.add((op.entity, op.op))
    assert len(seen) == 2 * len(ENTITIES)


def test_updates_change_realistic_columns() -> None:
    changed: dict[str, set[str]] = {}
    for op in plan_ops(9, 4000):
        if op.op == "u":
            assert op.values and "updated" in op.values and len(op.values) >= 2
            changed.setdefault(op.entity, set()).update(op.values)
    assert {"summary", "status", "assignee_id"} <= changed["issue"]
    assert {"body"} <= changed["comment"]
    assert {"display_name", "email_address"} <= changed["user"]
    assert "id" not in set().union(*changed.values())


def test_an_empty_tenant_grows_from_a_user() -> None:
    planner = Planner(random.Random(1), SourceState(["tenant-new"]))
    first = planner.next_op(NOW)
    assert (first.entity, first.op, first.id) == ("user", "c", 10_000)
    ops = planner.batch(500, NOW)
    assert {op.entity for op in ops} == set(ENTITIES)


def test_live_keys() -> None:
    keys = LiveKeys([1, 2, 3])
    keys.remove(1)
    keys.add(4)
    keys.remove(4)
    assert sorted(keys.ids) == [2, 3] and len(keys) == 2


def test_settings_batches_and_validation(tmp_path: Path) -> None:
    settings = ChurnSettings(rate=2000, seconds=10, seed=1, ledger=tmp_path / "l")
    assert (settings.batch_size, settings.batches) == (40, 500)
    assert settings.interval == pytest.approx(0.02)
    slow = ChurnSettings(rate=1, seconds=3, seed=1, ledger=tmp_path / "l")
    assert (slow.batch_size, slow.batches, slow.interval) == (1, 3, 1.0)
    with pytest.raises(ConfigError, match=r"^--rate must be greater than 0.*got 0$"):
        ChurnSettings(rate=0, seconds=1, seed=1, ledger=tmp_path / "l")
    with pytest.raises(ConfigError, match=r"^--seconds must be greater than 0, got -1$"):
        ChurnSettings(rate=1, seconds=-1, seed=1, ledger=tmp_path / "l")


class FakeClock:
    """Time that passes only when slept on or when a step says it took a while."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.now, sleep=self.sleep)


def test_pace_runs_each_batch_at_its_deadline_without_drift(tmp_path: Path) -> None:
    settings = ChurnSettings(rate=500, seconds=3, seed=1, ledger=tmp_path / "l")
    fake, starts = FakeClock(), []

    def step() -> None:
        starts.append(fake.now)
        fake.now += 0.007  # each batch takes 7 ms of the 20 ms slot

    seconds = pace(settings, step, fake.clock())
    assert len(starts) == 150
    assert starts == pytest.approx([100.0 + k * 0.02 for k in range(150)])
    assert seconds == pytest.approx(3.0)


def test_pace_catches_up_after_a_slow_batch_and_stops_on_time(tmp_path: Path) -> None:
    settings = ChurnSettings(rate=100, seconds=1, seed=1, ledger=tmp_path / "l")
    fake, starts = FakeClock(), []

    def step() -> None:
        starts.append(fake.now)
        fake.now += 0.35 if len(starts) == 3 else 0.001

    pace(settings, step, fake.clock())
    assert starts[3] == pytest.approx(starts[2] + 0.35)  # late: runs at once, no sleep
    assert starts[-1] == pytest.approx(100.0 + (len(starts) - 1) * 0.02)  # back on schedule
    assert len(starts) == 50

    def too_slow() -> None:
        starts.append(fake.now)
        fake.now += 0.3

    starts.clear()
    pace(settings, too_slow, fake.clock())
    assert len(starts) == 4  # 0.0, 0.3, 0.6, 0.9: the time is up after that


def test_run_churn_writes_the_ledger_after_each_commit(tmp_path: Path) -> None:
    settings = ChurnSettings(rate=100, seconds=0.1, seed=1, ledger=tmp_path / "l")
    planner = Planner(random.Random(2), seeded()[0])
    ledger, commits = io.StringIO(), iter(range(500, 600))

    def write(ops: Any) -> Commit:
        return Commit(next(commits), f"0/{len(ledger.getvalue()):X}", NOW)

    summary = run_churn(settings, planner, write, ledger, clock=FakeClock().clock())
    lines = [json.loads(line) for line in ledger.getvalue().splitlines()]
    assert summary.changes == len(lines) == 10 and summary.transactions == 5
    assert [line["xid"] for line in lines] == [500, 500, 501, 501, 502, 502, 503, 503, 504, 504]
    assert [line["seq"] for line in lines] == [0, 1] * 5
    assert set(lines[0]) == {
        "entity",
        "tenant_id",
        "id",
        "op",
        "xid",
        "seq",
        "commit_lsn_upper",
        "ts",
    }
    assert sum(sum(c.values()) for c in summary.counts.values()) == 10
    assert summary.to_json()["achieved_rate"] == pytest.approx(100.0)


def test_a_failed_commit_leaves_no_ledger_line(tmp_path: Path) -> None:
    settings = ChurnSettings(rate=100, seconds=1, seed=1, ledger=tmp_path / "l")
    planner, ledger, calls = Planner(random.Random(2), seeded()[0]), io.StringIO(), []

    def write(ops: Any) -> Commit:
        calls.append(ops)
        if len(calls) == 3:
            raise ConfigError("boom")
        return Commit(len(calls), "0/1", NOW)

    with pytest.raises(ConfigError):
        run_churn(settings, planner, write, ledger, clock=FakeClock().clock())
    assert len(ledger.getvalue().splitlines()) == 4


def test_ledger_line_format() -> None:
    ops = [Op("issue", "t1", 30_001, "u", {"summary": "x"}), Op("issue", "t1", 30_001, "d")]
    lines = ledger_lines(ops, Commit(7, "0/1A2B3C", NOW)).splitlines()
    assert json.loads(lines[1]) == {
        "entity": "issue",
        "tenant_id": "t1",
        "id": 30_001,
        "op": "d",
        "xid": 7,
        "seq": 1,
        "commit_lsn_upper": "0/1A2B3C",
        "ts": "2026-11-22T12:00:00+00:00",
    }


def test_seed_and_churn_refuse_a_catalog_without_the_demo_entities() -> None:
    # churn writes the entities the seed wrote, and both need them in the catalog
    assert set(ENTITY_NAMES) == set(DEMO_ENTITIES)
    jira = load_catalog(example_catalog("jira"))
    fields = {name: getattr(jira, name) for name in Catalog.model_fields}
    entities = {n: e for n, e in jira.entities.items() if n != "worklog"}
    partial = Catalog(**{**fields, "entities": entities})
    check_demo_catalog(Codec(catalog=jira), "source churn")
    with pytest.raises(ConfigError, match=r"^source churn .*Jira-shaped demo only.*no worklog$"):
        check_demo_catalog(Codec(catalog=partial), "source churn")


def test_runs_keep_each_rows_changes_in_order_and_change_a_row_once() -> None:
    # small tenants, so a batch changes some rows more than once
    state = SourceState(["t1"], {("t1", "user"): [10_000], ("t1", "project"): [20_000]})
    state.project_keys["t1", 20_000] = "ABC0"
    planner = Planner(random.Random(4), state)
    for _ in range(50):
        ops = planner.batch(200, NOW)
        order = [change for run in runs(ops) for change in run]
        assert sorted(map(id, order)) == sorted(map(id, ops))  # each change once
        for run in runs(ops):
            assert len({(c.entity, c.op) for c in run}) == 1
            assert len({(c.tenant_id, c.id) for c in run}) == len(run)
        rows = {(o.entity, o.id) for o in ops}
        for row in rows:
            planned = [o for o in ops if (o.entity, o.id) == row]
            assert [o for o in order if (o.entity, o.id) == row] == planned
    assert any(len(run) > 1 for run in runs(ops))


def test_updates_of_different_columns_share_a_run() -> None:
    ops = [
        Op("issue", "t1", 1, "u", {"summary": "a", "updated": NOW}),
        Op("issue", "t1", 2, "u", {"status": "Done", "priority": "Low", "updated": NOW}),
        Op("issue", "t1", 1, "u", {"priority": "High", "updated": NOW}),
    ]
    assert runs(ops) == [ops[:2], ops[2:]]
    assert updated_columns(ops[:2]) == ("priority", "status", "summary")
