"""Where every settings class reads its values: arguments, environment, secret files, YAML.

Precedence, highest first: values passed in code, ``SLUICEWAY_*`` environment variables,
``SLUICEWAY_*_FILE`` variables naming a file that holds the value (Docker and Kubernetes
secrets), files in ``SLUICEWAY_SECRETS_DIR`` named after the variable, the config file
(``SLUICEWAY_CONFIG``, else ``./sluiceway.yaml``), then the defaults. In the config file each
class reads the section named after its prefix: ``SLUICEWAY_KAFKA_PORT`` is ``kafka: {port:}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    YamlConfigSettingsSource,
)

from sluiceway.common.errors import ConfigError

CONFIG_ENV = "SLUICEWAY_CONFIG"
SECRETS_DIR_ENV = "SLUICEWAY_SECRETS_DIR"
DEFAULT_CONFIG = "sluiceway.yaml"
ROOT_PREFIX = "SLUICEWAY_"
FILE_SUFFIX = "_FILE"


def config_path() -> Path | None:
    """The config file in effect: ``SLUICEWAY_CONFIG`` (which must exist), else
    ``./sluiceway.yaml`` when there is one, else None."""
    given = os.environ.get(CONFIG_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={given}: no such file; expected a YAML config file")
        return path
    local = Path.cwd() / DEFAULT_CONFIG
    return local if local.is_file() else None


def env_prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", "")).upper()


def section_of(cls: type[BaseSettings]) -> str:
    """The config-file section a class reads: its prefix without ``SLUICEWAY_``, lower case
    (``kafka`` for ``SLUICEWAY_KAFKA_``); "" for ``SLUICEWAY_`` itself (top-level keys)."""
    return env_prefix(cls).removeprefix(ROOT_PREFIX).strip("_").lower()


def env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field reads, first one preferred."""
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return [str(c) for c in choices]
    if isinstance(alias, str):
        return [alias]
    return [f"{env_prefix(cls)}{name}".upper()]


class YamlSection(YamlConfigSettingsSource):
    """One class's section of the config file; a missing section is an empty one."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        section = section_of(settings_cls)
        try:
            super().__init__(settings_cls, yaml_file=path, yaml_config_section=section or None)
        except (yaml.YAMLError, TypeError) as exc:
            raise ConfigError(
                f"{path}: {str(exc).splitlines()[0]}; expected YAML mappings"
            ) from exc
        # Other classes read the rest of the file (two share the sink section): keep ours.
        own = set(settings_cls.model_fields)
        self.init_kwargs = {k: v for k, v in self.init_kwargs.items() if k in own}

    def _traverse_nested_section(
        self, data: dict[str, Any], section_path: str, original_path: str | None = None
    ) -> dict[str, Any]:
        found = data.get(section_path) if isinstance(data, dict) else None
        return found if found is not None else {}


class FileEnvSource(PydanticBaseSettingsSource):
    """``<VARIABLE>_FILE=/path``: the value is that file's content, without the final newline."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for name in env_names(self.settings_cls, field_name, field):
            given = os.environ.get(name + FILE_SUFFIX)
            if given:
                return read_secret_file(name + FILE_SUFFIX, given), field_name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                found[key] = value
        return found


def read_secret_file(variable: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"{variable}={path}: cannot read it ({exc.strerror}); expected a readable file"
        ) from exc


class SluicewaySettings(BaseSettings):
    """Base of every Sluiceway settings class (see the module docstring for precedence)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            FileEnvSource(settings_cls),
        ]
        secrets_dir = os.environ.get(SECRETS_DIR_ENV)
        if secrets_dir:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        path = config_path()
        if path is not None:
            sources.append(YamlSection(settings_cls, path))
        return tuple(sources)
