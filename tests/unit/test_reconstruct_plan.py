"""Reconstruct's pure parts: chain selection, gap detection, --as-of, --out parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from sluiceway.common.errors import ConfigError, TerminalError
from sluiceway.lake.errors import ManifestError
from sluiceway.lake.manifest import RunManifest
from sluiceway.tools.reconstruct.errors import BrokenChainError, TargetError
from sluiceway.tools.reconstruct.plan import make_plan
from sluiceway.tools.reconstruct.sql import README_ROWS, reconstruct_sql
from sluiceway.tools.reconstruct.target import parse_target
from tests.manifests import root_manifest, run_manifest

TOPIC = "sw.cdc.issue"
# Partition 0 holds the chain's tenant; partition 1 other tenants only, never read.
FULL_ID, D1, D2, D3 = (f"20261122T10{m:02d}00Z-aaaa" for m in (0, 10, 20, 30))


def manifest(
    etl_id: str, kind: str, start: dict[int, int], cut: dict[int, int], rows: int = 2, **spec: Any
) -> dict[str, Any]:
    files = [{"path": f"x/{etl_id}/part-00000.parquet", "rows": rows}] if rows else []
    return {
        "etl_id": etl_id,
        "type": kind,
        "spec": {"tenants": ["tenant-001"], "entities": ["issue"], "format": "parquet", **spec},
        "start": {TOPIC: {str(p): o for p, o in start.items()}},
        "cut": {TOPIC: {str(p): o for p, o in cut.items()}},
        "tables": {"issue": {"rows": rows, "files": files}},
    }


def good_chain() -> dict[str, dict[str, Any]]:
    return {
        FULL_ID: manifest(FULL_ID, "full", {0: 0, 1: 40}, {0: 10, 1: 40}),
        D1: manifest(D1, "delta", {0: 10, 1: 55}, {0: 20, 1: 55}),
        D2: manifest(D2, "delta", {0: 20, 1: 70}, {0: 20, 1: 70}, rows=0),  # quiet window
        D3: manifest(D3, "delta", {0: 20, 1: 90}, {0: 35, 1: 90}),
    }


def runs_of(docs: dict[str, dict[str, Any]]) -> dict[str, RunManifest]:
    return {i: run_manifest(d) for i, d in docs.items()}


def test_latest_chain_is_the_full_export_then_every_delta_in_order() -> None:
    plan = make_plan(runs_of(good_chain()), root_manifest(D3, D2), "issue", None)
    assert [r.etl_id for r in plan.runs] == [FULL_ID, D1, D2, D3]
    assert plan.as_of == D3
    assert [f.etl_id for f in plan.files] == [FULL_ID, D1, D3]  # the quiet delta has no file


def test_as_of_stops_the_chain_there() -> None:
    plan = make_plan(runs_of(good_chain()), root_manifest(D3, D2), "issue", D1)
    assert [r.etl_id for r in plan.runs] == [FULL_ID, D1]
    assert make_plan(runs_of(good_chain()), None, "issue", FULL_ID).runs[0].etl_id == FULL_ID


def test_a_later_full_export_starts_a_new_chain() -> None:
    docs = good_chain()
    later = "20261122T102500Z-bbbb"
    docs[later] = manifest(later, "full", {0: 0, 1: 80}, {0: 20, 1: 80})
    plan = make_plan(runs_of(docs), None, "issue", D3)
    assert [r.etl_id for r in plan.runs] == [later, D3]
    assert make_plan(runs_of(docs), None, "issue", D2).runs[0].etl_id == FULL_ID


def test_without_manifest_json_the_latest_run_is_the_highest_etl_id() -> None:
    assert make_plan(runs_of(good_chain()), None, "issue", None).as_of == D3


def test_a_missing_middle_delta_is_a_gap_naming_both_runs() -> None:
    docs = good_chain()
    del docs[D1]
    with pytest.raises(
        BrokenChainError, match=rf"run {D2} starts {TOPIC}\[0\] at offset 20.*{FULL_ID}, cut at 10"
    ):
        make_plan(runs_of(docs), root_manifest(D3, D2), "issue", None)


def test_a_missing_delta_whose_window_was_quiet_for_the_chain_is_no_gap() -> None:
    docs = good_chain()
    del docs[D2]  # it read nothing of partition 0, so D3 still starts at D1's cut
    plan = make_plan(runs_of(docs), None, "issue", None)
    assert [r.etl_id for r in plan.runs] == [FULL_ID, D1, D3]


def test_a_run_named_by_manifest_json_must_exist() -> None:
    docs = good_chain()
    del docs[D2]
    with pytest.raises(BrokenChainError, match=rf"names run {D2} as previous.*_runs/{D2}.json"):
        make_plan(runs_of(docs), root_manifest(D3, D2), "issue", None)


def test_an_overlapping_delta_is_refused() -> None:
    docs = good_chain()
    docs[D3]["start"][TOPIC]["0"] = 15
    with pytest.raises(BrokenChainError, match="gap in the delta chain"):
        make_plan(runs_of(docs), None, "issue", None)


def test_a_skipped_partition_the_chain_reads_is_a_gap() -> None:
    docs = good_chain()
    # partition 0 is the chain's: starting it at the run's own cut would skip 20..35
    docs[D3]["start"][TOPIC]["0"] = 35
    with pytest.raises(BrokenChainError, match=r"\[0\] at offset 35"):
        make_plan(runs_of(docs), None, "issue", None)


def test_no_full_export_at_or_before_as_of() -> None:
    docs = {D1: good_chain()[D1]}
    with pytest.raises(BrokenChainError, match=f"no full export at or before run {D1}"):
        make_plan(runs_of(docs), None, "issue", None)
    with pytest.raises(BrokenChainError, match="no run manifests"):
        make_plan({}, None, "issue", None)


def test_unknown_as_of_and_unknown_or_unexported_table() -> None:
    with pytest.raises(ConfigError, match="--as-of '20990101T000000Z-zzzz' is not a run"):
        make_plan(runs_of(good_chain()), None, "issue", "20990101T000000Z-zzzz")
    with pytest.raises(ConfigError, match="table 'epic' is unknown; expected one of project"):
        make_plan(runs_of(good_chain()), None, "epic", None)
    with pytest.raises(ConfigError, match="table 'user' is not in full export"):
        make_plan(runs_of(good_chain()), None, "user", None)


def test_a_delta_of_another_selection_or_format_is_refused() -> None:
    docs = good_chain()
    docs[D1]["spec"]["tenants"] = ["tenant-002"]
    with pytest.raises(BrokenChainError, match=f"delta {D1} selects tenants"):
        make_plan(runs_of(docs), None, "issue", None)
    docs = good_chain()
    docs[D1]["spec"]["format"] = "csv"
    with pytest.raises(ConfigError, match="wrote 'csv' files"):
        make_plan(runs_of(docs), None, "issue", None)


def test_table_rows_must_add_up_and_malformed_manifests_are_named() -> None:
    docs = good_chain()
    docs[D1]["tables"]["issue"]["rows"] = 5
    with pytest.raises(BrokenChainError, match="has 5 rows but its files add up to 2"):
        make_plan(runs_of(docs), None, "issue", None)
    with pytest.raises(ManifestError, match=r"manifest _runs/x.json is invalid: field type"):
        RunManifest.from_json(b'{"etl_id": "x"}', "_runs/x.json")
    assert issubclass(BrokenChainError, TerminalError)


@pytest.mark.parametrize(
    ("out", "kind", "location", "table", "display"),
    [
        ("/d/i.parquet", "parquet", "/d/i.parquet", None, "/d/i.parquet"),
        ("file:///d/i.parquet", "parquet", "/d/i.parquet", None, "/d/i.parquet"),
        ("rel/i.parquet", "parquet", "/cwd/rel/i.parquet", None, "/cwd/rel/i.parquet"),
        ("s3://b/p/i.parquet", "parquet", "s3://b/p/i.parquet", None, "s3://b/p/i.parquet"),
        ("duckdb:///d/x.db#t", "duckdb", "/d/x.db", "t", "duckdb:///d/x.db#t"),
        ("duckdb://x.db", "duckdb", "/cwd/x.db", "issue", "duckdb:///cwd/x.db#issue"),
        ("postgresql://u:pw@h:5/db#s.t", "postgresql", "postgresql://u:pw@h:5/db", "t",
         "postgresql://u:***@h:5/db#s.t"),
        ("postgres://u@h/db", "postgresql", "postgres://u@h/db", "issue",
         "postgres://u@h/db#public.issue"),
    ],
)  # fmt: skip
def test_out_forms(out: str, kind: str, location: str, table: str | None, display: str) -> None:
    target = parse_target(out, "issue", cwd=Path("/cwd"))
    assert (target.kind, target.location, target.table, target.display) == (
        kind, location, table, display,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("x.csv", "not a .parquet file name"),
        ("s3://just-a-bucket.parquet", "needs a bucket and a key"),
        ("mysql://h/db", "unsupported scheme"),
        ("duckdb://#t", "names no database file"),
        ("postgresql://u:pw@h/db#bad-name", r"names table 'bad-name'"),
        ("postgresql://u:pw@/db", "needs a host and a database"),
    ],
)
def test_bad_out_is_named(out: str, message: str) -> None:
    with pytest.raises(TargetError, match=message) as caught:
        parse_target(out, "issue")
    assert "pw" not in str(caught.value)  # a password never reaches a message


def test_the_guide_shows_the_one_reconstruction_sql() -> None:
    readme = (Path(__file__).parents[2] / "docs" / "guide.md").read_text()
    assert reconstruct_sql(README_ROWS) in readme


def test_the_sql_keeps_the_latest_version_and_drops_deletes() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE r AS SELECT * FROM (VALUES ('t1', 1, 'a', 1, false),"
        " ('t1', 1, 'b', 5, false), ('t1', 2, 'c', 2, false), ('t1', 2, NULL, 7, true),"
        " ('t2', 1, 'd', 3, false))"
        " AS v(_tenant_id, id, name, _position, _deleted)"
    )
    got = con.sql(f"SELECT _tenant_id, id, name FROM ({reconstruct_sql('r')}) ORDER BY 1, 2")
    assert got.fetchall() == [("t1", 1, "b"), ("t2", 1, "d")]


POLICY = {"fields": {}, "from_date": None, "opt_out": [], "pii": {}, "remap": None,
          "pii_secret_fingerprint": None}  # fmt: skip


def test_a_delta_made_with_another_policy_is_refused_naming_the_difference() -> None:
    docs = good_chain()
    for doc in docs.values():
        doc["policy"] = dict(POLICY)
    make_plan(runs_of(docs), None, "issue", None)  # one policy: one chain
    docs[D3]["policy"] = {**POLICY, "pii": {"user.email_address": "hash"},
                          "pii_secret_fingerprint": "ab12"}  # fmt: skip
    with pytest.raises(BrokenChainError, match=f"delta {D3} was made with another policy") as err:
        make_plan(runs_of(docs), None, "issue", None)
    assert "pii is {'user.email_address': 'hash'} here but unset in the chain" in str(err.value)
    assert "pii_secret differs" in str(err.value) and "ab12" not in str(err.value)
    assert make_plan(runs_of(docs), None, "issue", D2).as_of == D2  # before it, still one chain
    docs[D3].pop("policy")
    with pytest.raises(BrokenChainError, match="this run records no policy"):
        make_plan(runs_of(docs), None, "issue", None)


def test_manifests_from_before_policies_still_form_a_chain() -> None:
    assert [r.etl_id for r in make_plan(runs_of(good_chain()), None, "issue", None).runs] == [
        FULL_ID, D1, D2, D3,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "path", ["../outside/x.parquet", "/etc/passwd", "a/../../x.parquet", "a//b", "./a", ""]
)
def test_a_listed_path_outside_the_lake_is_refused_before_anything_is_read(path: str) -> None:
    docs = good_chain()
    docs[D1]["tables"]["issue"]["files"][0]["path"] = path
    with pytest.raises(TerminalError, match=f"run {D1}'s manifest lists file .* not inside"):
        make_plan(runs_of(docs), None, "issue", None)
