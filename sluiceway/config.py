"""The config file as a whole: which settings classes exist, which keys it may hold, and
where each merged value came from (``sluiceway config show``).

Each settings class reads its own section itself (``sluiceway.common.settings_base``); this module
checks the file once per command, so a misspelt key is an error naming the nearest valid one
instead of a setting silently left at its default.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from sluiceway.common.errors import ConfigError, ConfigProblems
from sluiceway.common.settings_base import (
    CONFIG_ENV,
    FILE_SUFFIX,
    SECRETS_DIR_ENV,
    SluicewaySettings,
    config_path,
    env_names,
    section_of,
)

# Every module that defines a settings class; importing them registers the classes.
SETTINGS_MODULES: tuple[str, ...] = (
    "sluiceway.common.settings",
    "sluiceway.control.runner",
    "sluiceway.control.pool",
    "sluiceway.common.health",
    "sluiceway.api.auth",
    "sluiceway.api.schedules",
    "sluiceway.api.dp_jobs",
    "sluiceway.control.cleanup",
    "sluiceway.producers.config",
    "sluiceway.processors.config",
    "sluiceway.sinks.config",
    "sluiceway.sinks.guard_config",
    "sluiceway.sinks.sns",
)
REDACTED = "**********"


def settings_classes() -> list[type[SluicewaySettings]]:
    """Every settings class, ordered by config-file section."""
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    found: list[type[SluicewaySettings]] = []
    pending = list(SluicewaySettings.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending += cls.__subclasses__()
    return sorted(found, key=lambda c: (section_of(c), c.__name__))


def use_config_file(given: Path | None) -> None:
    """Make ``given`` (or ./sluiceway.yaml) the config of this command and of the workers it
    starts (by an absolute ``SLUICEWAY_CONFIG``), and refuse a file with unknown keys."""
    if given is not None:
        if not given.is_file():
            raise ConfigError(f"--config {given}: no such file; expected a YAML config file")
        os.environ[CONFIG_ENV] = str(given.resolve())
    path = config_path()
    if path is None:
        return
    os.environ[CONFIG_ENV] = str(path.resolve())
    check_file(path)


def valid_keys() -> dict[str, set[str]]:
    """Section -> the keys it may hold; section "" holds the top-level settings."""
    keys: dict[str, set[str]] = {}
    for cls in settings_classes():
        keys.setdefault(section_of(cls), set()).update(cls.model_fields)
    return keys


def check_file(path: Path) -> None:
    """Refuse a config file that is not YAML mappings or holds keys no setting reads."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it as YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, not {type(data).__name__}")
    keys = valid_keys()
    top = keys.get("", set()) | set(keys) - {""}
    problems: list[str] = []
    for key, value in data.items():
        if str(key) not in top:
            problems.append(_unknown(str(key), top))
        elif str(key) in keys:
            problems += _section_problems(str(key), value, keys[str(key)])
    if problems:
        raise ConfigProblems(f"{path}", problems)


def _section_problems(section: str, value: Any, allowed: set[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"section {section!r} must be a mapping of settings, not {value!r}"]
    return [
        _unknown(f"{section}.{key}", {f"{section}.{name}" for name in allowed})
        for key in value
        if str(key) not in allowed
    ]


def _unknown(key: str, allowed: set[str]) -> str:
    nearest = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
    hint = f"did you mean {nearest[0]!r}?" if nearest else "see docs/configuration.md"
    return f"unknown key {key!r}; {hint}"


@dataclass(frozen=True)
class Value:
    """One merged setting and where it came from."""

    key: str
    env: str
    value: Any
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "env": self.env, "value": self.value, "source": self.source}


def merged() -> list[Value]:
    """Every setting's value in effect (secrets redacted) and its source."""
    values: list[Value] = []
    for cls in settings_classes():
        try:
            instance: SluicewaySettings | None = cls()
        except ValidationError:
            instance = None  # e.g. the API token, required only by `serve`
        origins = _origins(cls)
        for name, field in cls.model_fields.items():
            raw = getattr(instance, name) if instance is not None else None
            section = section_of(cls)
            values.append(
                Value(
                    key=f"{section}.{name}" if section else name,
                    env=env_names(cls, name, field)[0],
                    value=_shown(raw),
                    source=origins.get(name, "default" if instance is not None else "not set"),
                )
            )
    return values


def _shown(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, Path):
        return str(value)
    return value


def _origins(cls: type[SluicewaySettings]) -> dict[str, str]:
    """Field name -> the highest-precedence source that sets it (none: the default)."""
    found: dict[str, str] = {}
    path = config_path()
    for name, field in cls.model_fields.items():
        names = env_names(cls, name, field)
        env = next((n for n in names if _env_set(n)), None)
        file_env = next((n + FILE_SUFFIX for n in names if os.environ.get(n + FILE_SUFFIX)), None)
        secret = _secret_file(names)
        if env is not None:
            found[name] = f"env {env}"
        elif file_env is not None:
            found[name] = f"file named by {file_env}"
        elif secret is not None:
            found[name] = f"secret file {secret}"
        elif path is not None and _in_file(path, section_of(cls), name):
            found[name] = f"config {path}"
    return found


def _env_set(name: str) -> bool:
    # Settings read the environment case-insensitively.
    return any(key.upper() == name.upper() for key in os.environ)


def _secret_file(names: list[str]) -> Path | None:
    folder = os.environ.get(SECRETS_DIR_ENV)
    if not folder:
        return None
    candidates = [Path(folder) / n for n in [*names, *(n.lower() for n in names)]]
    return next((path for path in candidates if path.is_file()), None)


def _in_file(path: Path, section: str, name: str) -> bool:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    holder = data.get(section) if section else data
    return isinstance(holder, dict) and name in holder
