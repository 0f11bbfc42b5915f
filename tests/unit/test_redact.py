"""Secrets never reach an error message: URLs with credentials or query tokens, connection
strings with passwords, and settings whose values are secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluiceway.common.errors import ConfigError
from sluiceway.common.redact import redact
from sluiceway.common.settings import PostgresSettings, settings_problem
from sluiceway.common.spec_errors import SpecError
from sluiceway.sinks.guard_config import GuardSettings
from sluiceway.tools.migrate import target

HOOK = "ftp://hookuser:hookpass@hooks.example/x?token=tok123&sig=sig456"


@pytest.mark.parametrize(
    ("text", "shown", "hidden"),
    [
        (HOOK, "ftp://***@hooks.example/x?token=***&sig=***", ("hookpass", "tok123", "sig456")),
        ("'https://a:b@h:99999/p'", "'https://***@h:99999/p'", ("a:b",)),
        ("postgresql://me:pa%20ss@db/x", "postgresql://***@db/x", ("pa%20ss",)),
        ("host=db password='a b c' user=x", "host=db password=*** user=x", ("a b",)),
        ("host=db password=abc user=x", "host=db password=*** user=x", ("abc",)),
        ("s3://bucket/prefix is not writable", "s3://bucket/prefix is not writable", ()),
    ],
)
def test_redact(text: str, shown: str, hidden: tuple[str, ...]) -> None:
    assert redact(text) == shown
    assert not any(h in redact(text) for h in hidden)


def test_a_bad_webhook_setting_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_SINK_WEBHOOK_URL", HOOK)
    with pytest.raises(ValidationError) as caught:
        GuardSettings()
    problem = settings_problem(caught.value)
    assert problem is not None and problem.startswith("bad setting SLUICEWAY_SINK_WEBHOOK_URL=")
    assert "hooks.example" in problem
    assert not any(secret in problem for secret in ("hookpass", "tok123", "sig456"))


def test_a_bad_secret_setting_is_not_shown_at_all() -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresSettings(password=987654321)  # type: ignore[arg-type]
    problem = settings_problem(caught.value)
    assert problem is not None and "SLUICEWAY_PG_PASSWORD" in problem
    assert "987654321" not in problem


def test_errors_mask_what_they_quote() -> None:
    assert str(ConfigError(f"cannot reach {HOOK}")) == (
        "cannot reach ftp://***@hooks.example/x?token=***&sig=***"
    )
    spec = SpecError([("destination", f"bad {HOOK}")])
    assert "tok123" not in str(spec) and "tok123" not in spec.problems[0][1]


def test_a_connection_string_that_does_not_parse_is_not_quoted() -> None:
    with pytest.raises(ConfigError) as caught:
        target.connect("host=127.0.0.1 port=1 password=correct horse")
    assert "horse" not in str(caught.value) and "correct" not in str(caught.value)
    assert str(caught.value).startswith("cannot connect to the target database: the connection")


def test_settings_build_quoted_connection_strings() -> None:
    pg = PostgresSettings(password="a b sslmode=disable")  # type: ignore[arg-type]
    assert pg.connect_kwargs()["password"] == "a b sslmode=disable"
    assert "password='a b sslmode=disable'" in pg.dsn()
