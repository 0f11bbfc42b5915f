"""Run specs: valid files load, and every invalid field is reported at once, by path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sluiceway.common.errors import ConfigError
from sluiceway.common.spec import RunSpec, check_tenants, load_spec_file, parse_spec
from sluiceway.common.spec_errors import SpecError
from sluiceway.common.spec_fields import entity_columns
from tests.catalogs import ENTITIES

SECRET = "s3cr3t-destination-key"

EXAMPLE: dict[str, Any] = {
    "tenants": ["tenant-001"],
    "entities": ["project", "issue", "user"],
    "fields": {"issue": ["key", "summary", "project_key", "assignee_id", "updated"]},
    "from_date": "2026-01-01T00:00:00Z",
    "opt_out": ["SECRET"],
    "pii": {"user.email_address": "hash", "user.display_name": "mask", "issue.summary": "drop"},
    "pii_secret": SECRET,
    "remap": {"tenant": "tenant-900", "id_offset": 1000000},
    "type": "continuous",
    "interval": 300,
    "destination": "s3://lake/exports/jira",
    "format": "parquet",
}


def _minimal(**extra: Any) -> dict[str, Any]:
    return {"tenants": ["t1"], "destination": "/tmp/lake", **extra}


def _problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return dict(info.value.problems)


def test_full_example_parses() -> None:
    spec = parse_spec(EXAMPLE)
    assert spec.tenants == ("tenant-001",)
    assert spec.from_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert spec.columns("issue") == (
        "id",
        "key",
        "project_key",
        "summary",
        "assignee_id",
        "updated",
    )
    assert spec.columns("user") == entity_columns("user")
    assert spec.pii_rules("user") == {"email_address": "hash", "display_name": "mask"}
    assert spec.remap is not None and spec.remap.id_offset == 1_000_000


def test_defaults() -> None:
    spec = parse_spec(_minimal())
    assert spec.entities == ENTITIES
    assert spec.type == "full" and spec.format == "parquet"
    assert spec.interval is None and spec.from_date is None and spec.remap is None
    assert all(spec.columns(e) == entity_columns(e) for e in ENTITIES)


def test_spec_is_frozen() -> None:
    spec = parse_spec(_minimal())
    with pytest.raises(ValueError, match="frozen"):
        spec.tenants = ("other",)  # type: ignore[misc]


def test_from_date_with_offset_is_normalised_to_utc() -> None:
    spec = parse_spec(_minimal(from_date="2026-01-01T02:00:00+02:00"))
    assert spec.from_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert spec.from_date is not None and spec.from_date.tzinfo == UTC


def test_empty_field_list_keeps_only_id() -> None:
    assert parse_spec(_minimal(fields={"user": []})).columns("user") == ("id",)


@pytest.mark.parametrize(
    ("destination", "normal"),
    [
        ("s3://lake/a/b/", "s3://lake/a/b"),
        ("s3://lake", "s3://lake"),
        ("/data/lake/../other", "/data/other"),
        ("relative/dir", "relative/dir"),
    ],
)
def test_destination_is_normalised(destination: str, normal: str) -> None:
    assert parse_spec(_minimal(destination=destination)).destination == normal


@pytest.mark.parametrize(
    ("data", "path", "needle"),
    [
        ({"destination": "/x"}, "tenants", "field required"),
        (_minimal(tenants=[]), "tenants", "must not be empty"),
        (_minimal(tenants="t1"), "tenants", "must be a list"),
        (_minimal(tenants=["t1", ""]), "tenants[1]", "must not be empty"),
        (_minimal(entities=["issue", "epic"]), "entities[1]", "'epic' is not one of project"),
        (_minimal(entities=[]), "entities", "must not be empty"),
        (_minimal(fields={"issue": ["sumary"]}), "fields.issue", "unknown column 'sumary'"),
        (_minimal(fields={"epic": ["id"]}), "fields.epic", "unknown entity 'epic' (known: project"),
        (_minimal(fields={"user": "email"}), "fields.user", "must be a list"),
        (_minimal(from_date="2026-01-01T00:00:00"), "from_date", "no UTC offset"),
        (_minimal(from_date="yesterday"), "from_date", "datetime"),
        (_minimal(opt_out=[""]), "opt_out[0]", "must not be empty"),
        (_minimal(pii={"issue.nope": "drop"}), "pii['issue.nope']", "unknown column 'nope'"),
        (_minimal(pii={"epic.x": "drop"}), "pii['epic.x']", "unknown entity 'epic'"),
        (_minimal(pii={"email": "drop"}), "pii.email", "not of the form entity.column"),
        (_minimal(pii={"user.id": "drop"}), "pii['user.id']", "cannot carry a pii rule"),
        (
            _minimal(pii={"user.email_address": "encrypt"}),
            "pii['user.email_address']",
            "'encrypt' is not one of drop, hash, mask",
        ),
        (_minimal(pii={"user.email_address": "hash"}), "pii_secret", "required when"),
        (_minimal(pii_secret=""), "pii_secret", "must not be empty"),
        (_minimal(remap={"id_offset": 5}), "remap.tenant", "field required"),
        (_minimal(remap={"tenant": "t9", "id_offset": -1}), "remap.id_offset", ">= 0"),
        (_minimal(remap={"tenant": "t9", "shift": 1}), "remap.shift", "unknown field 'shift'"),
        (
            _minimal(tenants=["t1", "t2"], remap={"tenant": "t9"}),
            "remap",
            "exactly one tenant",
        ),
        (_minimal(type="weekly"), "type", "'weekly' is not one of full, delta, continuous"),
        (_minimal(type="continuous"), "interval", "required when type is 'continuous'"),
        (_minimal(type="continuous", interval=0), "interval", ">= 1"),
        (_minimal(type="continuous", interval=86_401), "interval", "<= 86400"),
        (_minimal(interval=60), "interval", "only allowed when type is 'continuous'"),
        (_minimal(destination=""), "destination", "must not be empty"),
        (_minimal(destination="../up"), "destination", "'..'"),
        (_minimal(destination="a/../../up"), "destination", "'..'"),
        (_minimal(destination="s3://"), "destination", "no bucket"),
        (_minimal(destination="s3:///prefix"), "destination", "no bucket"),
        (_minimal(destination="gs://b/p"), "destination", "scheme 'gs' not supported"),
        (_minimal(format="xlsx"), "format", "'xlsx' is not one of parquet, csv"),
        (_minimal(color="red"), "color", "unknown field 'color' (allowed: tenants"),
    ],
)
def test_invalid_field_is_named(data: dict[str, Any], path: str, needle: str) -> None:
    problems = _problems(data)
    assert path in problems, problems
    assert needle in problems[path]


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "entities": ["issue", "epic"],
        "fields": {"issue": ["id", "sumary"]},
        "pii": {"issue.nope": "drop"},
        "type": "continuous",
        "format": "xml",
    }
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    paths = [p for p, _ in info.value.problems]
    expected = ["tenants", "entities[1]", "fields.issue", "pii['issue.nope']"]
    assert paths == [*expected, "interval", "destination", "format"]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "tenants: field required; entities[1]: 'epic' is not one of project, user, issue, "
        "comment, worklog; fields.issue: unknown column 'sumary' (known: id, key, "
    )
    assert isinstance(info.value, ConfigError)


def test_a_non_mapping_is_rejected() -> None:
    with pytest.raises(SpecError, match="a spec is a mapping"):
        parse_spec(["tenants"])  # type: ignore[arg-type]


def test_secret_never_leaks() -> None:
    spec = parse_spec(EXAMPLE)
    assert spec.pii_secret is not None and spec.pii_secret.get_secret_value() == SECRET
    public = spec.public_dict()
    assert "pii_secret" not in public
    for text in (json.dumps(public), str(spec), repr(spec), spec.model_dump_json()):
        assert SECRET not in text


def test_public_dict_is_json_and_round_trips_without_secret() -> None:
    spec = parse_spec(EXAMPLE)
    public = json.loads(json.dumps(spec.public_dict()))
    assert public["from_date"] == "2026-01-01T00:00:00Z"
    assert public["fields"] == {
        "issue": ["key", "summary", "project_key", "assignee_id", "updated"]
    }
    again = parse_spec({**public, "pii_secret": SECRET})
    assert again == spec


def test_check_tenants_names_each_unknown_tenant() -> None:
    spec = parse_spec(_minimal(tenants=["t1", "t2", "t3"]))
    check_tenants(spec, {"t1", "t2", "t3", "t4"})
    with pytest.raises(SpecError) as info:
        check_tenants(spec, {"t2"})
    assert [p for p, _ in info.value.problems] == ["tenants[0]", "tenants[2]"]
    assert "unknown tenant 't1' (known: t2)" in str(info.value)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_spec_files_load(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_text(json.dumps(EXAMPLE))  # JSON is valid YAML
    assert load_spec_file(path) == parse_spec(EXAMPLE)


def test_yaml_with_native_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "tenants: [tenant-001]\n"
        "from_date: 2026-01-01T00:00:00Z\n"
        "pii:\n  user.email_address: mask\n"
        "destination: /tmp/lake\n"
    )
    spec = load_spec_file(path)
    assert spec.from_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert spec.pii == {"user.email_address": "mask"}


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("bad.json", '{"tenants": [', "invalid JSON at line 1"),
        ("bad.yaml", "tenants: [a\ndestination: x\n", "invalid YAML at line"),
        ("list.json", "[1, 2]", "a spec is a mapping of fields, got list"),
        ("empty.yaml", "", "a spec is a mapping of fields, got NoneType"),
        ("spec.toml", "tenants = []", "unsupported spec file type '.toml'"),
        ("invalid.json", '{"destination": "/x"}', "tenants: field required"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert needle in message
    assert "\n" not in message


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(SpecError, match=r"absent\.json: cannot read: No such file"):
        load_spec_file(path)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValueError, match="interval"):
        RunSpec(tenants=("t1",), destination="/x", type="continuous")
