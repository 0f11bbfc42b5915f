"""Bad input never escapes as a traceback or an HTTP 500: the spec parser, the API bodies and
the CLI flags each answer one line (4xx in the API) whatever they are given.

The hypothesis tests stop before anything reaches a stack: ``start_run`` is replaced by a stub
that refuses with a ConfigError, so an input that gets that far was accepted as valid.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from typer.testing import CliRunner

from sluiceway.api.app import Services, create_app
from sluiceway.api.config_store import MemoryStore
from sluiceway.api.scheduler import Scheduler
from sluiceway.cli import build_app
from sluiceway.common.errors import ConfigError
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec, load_spec_file, parse_spec
from sluiceway.common.spec_errors import SpecError
from sluiceway.control.runner import Workers
from tests.catalogs import ENTITIES

TOKEN = "unit-test-token-bad-input-0123456789"
DP = "/rest/datapipeline/latest"
OVERFLOWING = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def refuse(*_: Any, **__: Any) -> tuple[RunRecord, Workers | None]:
    raise ConfigError("stub: the input was accepted")


def services(lake: Path) -> Services:
    kafka, s3 = KafkaSettings(port=1, topic_prefix="unit.sw."), S3Settings(port=1)
    config = MemoryStore({"tenants": ["t1"], "export-path": str(lake)})
    scheduler = Scheduler(
        kafka, s3, MemoryStore(), config, starter=refuse, chain_exists=lambda _: False,
        probe=lambda: None,
    )  # fmt: skip
    return Services(kafka, s3, SecretStr(TOKEN), config, scheduler, roots=(str(lake),))


@contextmanager
def api(lake: Path) -> Iterator[TestClient]:
    """A client that gets 500s as answers instead of exceptions; no run ever starts."""
    stubs = [
        mock.patch(f"sluiceway.api.{module}.start_run", refuse)
        for module in ("runs", "datapipeline")
    ]
    stubs.append(mock.patch("sluiceway.api.datapipeline.known_tenants", lambda _: {"t1"}))
    stubs.append(mock.patch("sluiceway.api.dp_config.known_project_keys", lambda _: {"ABC"}))
    for stub in stubs:
        stub.start()
    try:
        app = create_app(services(lake))
        with TestClient(app, raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            yield client
    finally:
        for stub in stubs:
            stub.stop()


def one_line_4xx(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert isinstance(error, str) and "\n" not in error and "Traceback" not in error


# -- the reported cases ---------------------------------------------------------------------


@pytest.mark.parametrize("value", OVERFLOWING)
def test_from_date_out_of_utc_range_is_a_clear_error_everywhere(value: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"tenants": ["t1"], "destination": "/x", "from_date": value})
    assert caught.value.problems[0][0] == "from_date" and value in str(caught.value)
    with api(tmp_path) as client:
        response = client.post(f"{DP}/export", params={"fromDate": value})
        one_line_4xx(response)
        assert value in response.json()["error"]
        spec = {"tenants": ["t1"], "destination": str(tmp_path), "from_date": value}
        response = client.post("/runs", json=spec)
        one_line_4xx(response)
        schedule = {"fromDate": value, "repeatDays": ["MONDAY"], "startTime": "02:00"}
        response = client.put(f"{DP}/config/schedule", json=schedule)
        one_line_4xx(response)
        assert response.json()["problems"][0]["field"] == "fromDate"


@pytest.mark.parametrize("value", OVERFLOWING)
@pytest.mark.parametrize("flag", ["--to", "--from-date"])
def test_cli_dates_out_of_utc_range_are_one_line(value: str, flag: str) -> None:
    command = ["replay"] if flag == "--to" else ["export", "start"]
    result = cli([*command, flag, value, "--tenant", "t1", "--dest", "/tmp/x"])
    assert refused_cleanly(result)
    assert "falls outside" in result.stderr and value in result.stderr


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"tenants": ["t1"], "destination": "/x", "n": ' + "9" * 5000 + "}", "digits"),
        ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
    ],
)
def test_huge_numbers_and_deep_nesting_in_a_spec_file(
    tmp_path: Path, suffix: str, text: str, needle: str
) -> None:
    file = tmp_path / f"spec{suffix}"
    file.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec_file(file)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    result = cli(["export", "start", "--spec", str(file)])
    assert refused_cleanly(result) and needle in result.stderr


@pytest.mark.parametrize(
    "body",
    [
        '{"tenants": ["t1"], "destination": "/x", "n": ' + "9" * 5000 + "}",
        "[" * 20_000 + "]" * 20_000,
    ],
)
def test_huge_numbers_and_deep_nesting_in_a_body(tmp_path: Path, body: str) -> None:
    headers = {"Content-Type": "application/json"}
    with api(tmp_path) as client:
        for method, path in (("POST", "/runs"), ("PUT", f"{DP}/config/schedule")):
            one_line_4xx(client.request(method, path, content=body, headers=headers))


# -- properties -----------------------------------------------------------------------------


def refused_cleanly(result: Any) -> bool:
    """A non-zero exit through SystemExit (an error line or click's usage), no traceback."""
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    return not crashed and result.exit_code != 0 and "Traceback" not in result.output


def cli(args: list[str]) -> Any:
    with (
        mock.patch("sluiceway.commands.export.start_run", refuse),
        mock.patch("sluiceway.commands.replay.start_run", refuse),
    ):
        return CliRunner().invoke(build_app(), args)


OFFSETS = st.sampled_from(["", "Z", "+00:00", "+01:00", "-01:00", "+23:59", "-23:59", "+99:99"])
DATE_TEXT = st.one_of(
    st.builds(lambda d, o: d.isoformat() + o, st.datetimes(), OFFSETS),
    st.text(string.digits + "-:TZ+. ", max_size=40),
    st.text(max_size=20),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), DATE_TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
SPEC_KEYS = (*RunSpec.model_fields, "bogus")
SPECS = st.dictionaries(st.sampled_from(SPEC_KEYS), JSON, max_size=len(SPEC_KEYS)) | JSON


@FAST
@given(data=SPECS)
def test_the_spec_parser_raises_only_spec_errors(data: Any) -> None:
    try:
        parse_spec(data)
    except SpecError as exc:
        assert "\n" not in str(exc)


@FAST
@given(
    text=st.text(max_size=300) | JSON.map(json.dumps),
    suffix=st.sampled_from([".json", ".yaml"]),
)
def test_spec_files_raise_only_spec_errors(tmp_path: Path, text: str, suffix: str) -> None:
    file = tmp_path / f"spec{suffix}"
    file.write_text(text)
    try:
        load_spec_file(file)
    except SpecError as exc:
        assert "\n" not in str(exc)


ROUTES = [
    ("POST", "/runs"), ("POST", f"{DP}/config/optout"), ("DELETE", f"{DP}/config/optout"),
    ("PUT", f"{DP}/config/export-path"), ("PUT", f"{DP}/config/tenants"),
    ("PUT", f"{DP}/config/schedule"),
]  # fmt: skip
BODIES = st.one_of(
    SPECS,
    st.fixed_dictionaries(
        {"fromDate": DATE_TEXT, "repeatDays": JSON, "startTime": JSON, "schemaVersion": JSON}
    ),
    st.fixed_dictionaries({"path": JSON}),
    st.fixed_dictionaries({"tenants": JSON}),
    st.fixed_dictionaries({"type": JSON, "keys": JSON}),
)


@FAST
@given(route=st.sampled_from(ROUTES), body=BODIES, from_date=DATE_TEXT)
def test_no_api_body_or_query_gets_a_500(
    tmp_path: Path, route: tuple[str, str], body: Any, from_date: str
) -> None:
    with api(tmp_path) as client:
        # json.dumps writes NaN and Infinity, which the server's parser reads back
        headers = {"Content-Type": "application/json"}
        response = client.request(*route, content=json.dumps(body), headers=headers)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert "\n" not in response.json()["error"]
        response = client.post(f"{DP}/export", params={"fromDate": from_date})
        assert response.status_code < 500, response.text


FLAG_TEXT = st.one_of(DATE_TEXT, st.text(max_size=20).filter(lambda t: "\x00" not in t))


@FAST
@given(
    to=FLAG_TEXT, from_date=FLAG_TEXT, tenant=FLAG_TEXT, dest=FLAG_TEXT,
    entities=st.lists(st.sampled_from([*ENTITIES, "bogus", ""]), max_size=3).map(",".join),
    run_type=st.sampled_from(["full", "delta", "continuous", "bogus"]),
)  # fmt: skip
def test_no_cli_flag_gets_a_traceback(
    to: str, from_date: str, tenant: str, dest: str, entities: str, run_type: str
) -> None:
    runs = [
        ["replay", "--to", to, "--tenant", tenant, "--dest", dest],
        ["export", "start", "--tenant", tenant, "--dest", dest, "--from-date", from_date,
         "--entities", entities, "--type", run_type],
    ]  # fmt: skip
    for args in runs:
        result = cli(args)
        assert refused_cleanly(result), (args, result.exception, result.output)


def test_a_body_key_with_a_line_break_is_quoted_on_one_line(tmp_path: Path) -> None:
    """Found by the property above: the key was printed raw, splitting the error line."""
    with api(tmp_path) as client:
        body = {"type": "PROJECT", "keys": ["A"], "bad\nkey": 1}
        response = client.post(f"{DP}/config/optout", json=body)
        assert response.status_code == 422
        error = response.json()["error"]
        assert "\n" not in error and '["bad\\nkey"]: Extra inputs are not permitted' in error
