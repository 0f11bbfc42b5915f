"""Entity schemas derived from the catalog: the checked-in Jira schemas are these, current."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from sluiceway.cli import build_app
from sluiceway.commands.schemas import default_out
from sluiceway.common.catalog import CatalogError, load_catalog, parse_catalog
from sluiceway.common.catalog_schemas import (
    entity_arrow_schema,
    entity_record,
    entity_records,
    record_name,
    render_record,
    schema_file_name,
)
from sluiceway.common.resources import example_catalog
from tests.repo import ROOT

JIRA = ROOT / "examples" / "jira" / "catalog.yaml"
SCHEMAS = ROOT / "schemas"


def test_the_derived_jira_records_equal_the_checked_in_schemas() -> None:
    catalog = load_catalog(JIRA)
    for name, record in entity_records(catalog).items():
        checked_in = SCHEMAS / schema_file_name(catalog, name)
        assert json.loads(checked_in.read_text()) == record, name


def test_the_checked_in_jira_schemas_are_current(tmp_path: Path) -> None:
    """Fails when examples/jira/catalog.yaml changed and `sluiceway schemas generate` was
    not run: the generated files must be the checked-in ones, byte for byte, and no entity
    schema of the namespace may be left over."""
    result = CliRunner().invoke(
        build_app(), ["schemas", "generate", "--catalog", str(JIRA), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.avsc")}
    checked_in = {p.name: p.read_text() for p in SCHEMAS.glob("sluiceway.entity.*.avsc")}
    stale = [n for n in checked_in if checked_in[n] != generated.get(n)]
    assert not stale, "stale, run `sluiceway schemas generate`: " + ", ".join(stale)
    assert generated.keys() == checked_in.keys()


def test_generate_leaves_current_files_untouched(tmp_path: Path) -> None:
    app, args = build_app(), ["schemas", "generate", "--out", str(tmp_path), "--json"]
    first = json.loads(CliRunner().invoke(app, args).stdout)
    stamps = {p: Path(p).stat().st_mtime_ns for p in first["files"]}
    CliRunner().invoke(app, args)
    assert {p: Path(p).stat().st_mtime_ns for p in first["files"]} == stamps
    assert first["catalog"] == str(JIRA)


def _catalog(columns: list[dict[str, object]], **more: object) -> object:
    entity = {"table": "app.work_log", "key": ["id"], "tenant": {"column": "tenant_id"},
              "columns": [{"name": "id", "type": "uuid", "nullable": False}, *columns]}  # fmt: skip
    return parse_catalog({"entities": {"work_log": entity}, **more}, "test")


def test_a_record_carries_names_docs_and_user_types() -> None:
    catalog = _catalog(
        [{"name": "state", "type": "mood[]", "doc": "Moods."},
         {"name": "size", "type": "positive", "nullable": False}],
        namespace="acme.rows", types={"mood": {"kind": "enum", "values": ["a"]},
                                      "positive": {"kind": "domain", "base": "numeric(9,3)"}},
    )  # fmt: skip
    record = entity_record(catalog, "work_log")  # type: ignore[arg-type]
    assert record_name("work_log") == "WorkLog"
    assert (record["name"], record["namespace"]) == ("WorkLog", "acme.rows")
    assert record["fields"][1] == {
        "name": "state", "type": ["null", {"type": "array", "items": ["null", "string"]}],
        "default": None, "doc": "Moods.",
    }  # fmt: skip
    assert record["fields"][2]["type"]["precision"] == 9
    assert "\n" in render_record(record) and json.loads(render_record(record)) == record
    schema = entity_arrow_schema(catalog, "work_log")  # type: ignore[arg-type]
    assert schema.field("size").type == pa.decimal128(9, 3)
    assert not schema.field("size").nullable


def test_unmapped_types_and_names_are_refused_naming_schema_table_column() -> None:
    catalog = _catalog([{"name": "price", "type": "money"}, {"name": "Order Date", "type": "date"}])
    with pytest.raises(CatalogError) as info:
        entity_record(catalog, "work_log")  # type: ignore[arg-type]
    message = str(info.value)
    assert "app.work_log.price (money): type 'money' has no mapping" in message
    assert "app.work_log.Order Date: Avro field names match" in message
    assert "\n" not in message


def test_generate_refuses_a_bad_catalog_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.yaml"
    bad.write_text(JIRA.read_text().replace("type: double precision", "type: point"))
    result = CliRunner().invoke(
        build_app(), ["schemas", "generate", "--catalog", str(bad), "--out", str(tmp_path)]
    )
    assert result.exit_code == 3
    assert "public.issues.story_points (point): type 'point' has no mapping" in result.output
    assert not list(tmp_path.glob("*.avsc"))


def test_the_jira_catalog_ships_and_an_installed_package_needs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert example_catalog("jira").read_text() == JIRA.read_text()
    assert default_out() == SCHEMAS
    # as if installed: the schemas folder then lies under site-packages
    monkeypatch.setattr(sysconfig, "get_path", lambda _name: str(ROOT))
    result = CliRunner().invoke(build_app(), ["schemas", "generate"])
    assert result.exit_code == 3
    assert "--out is needed" in result.output
