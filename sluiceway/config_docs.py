"""docs/configuration.md, written from the settings classes themselves.

``sluiceway config docs --output docs/configuration.md`` regenerates it; a unit test fails
when the committed file differs from what this module renders.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sluiceway.common.settings_base import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    FILE_SUFFIX,
    SECRETS_DIR_ENV,
    SluicewaySettings,
    env_names,
    section_of,
)
from sluiceway.config import settings_classes

INTRO = f"""# Configuration

<!-- Generated from the settings classes by `make docs`; do not edit. -->

Every setting can be given in one YAML file or in an environment variable. Sluiceway reads
the file named by `--config` (an option of the main command), else `${CONFIG_ENV}`, else
`./{DEFAULT_CONFIG}` when the working directory holds one. Values are taken in this order,
the first found wins:

1. environment variables (`SLUICEWAY_KAFKA_PORT=19092`);
2. `<VARIABLE>{FILE_SUFFIX}` variables naming a file that holds the value, for secrets mounted
   by Docker or Kubernetes (`SLUICEWAY_PG_PASSWORD{FILE_SUFFIX}=/run/secrets/pg`);
3. files in the folder `${SECRETS_DIR_ENV}` named after the variable
   (`$SLUICEWAY_SECRETS_DIR/SLUICEWAY_PG_PASSWORD`);
4. the config file;
5. the defaults below.

In the file each group below is a section, and each option a key in it:

```yaml
kafka:
  host: kafka.internal
  port: 9092
pg:
  host: db.internal
  password: change-me   # better: SLUICEWAY_PG_PASSWORD{FILE_SUFFIX}
sink:
  compression: zstd
```

A key the file may not hold is an error naming the nearest valid key.
`sluiceway config show` prints every value in effect and where it came from, with secrets
redacted (`--json` for a machine). Secrets are never printed, logged or written to topics.
"""


OTHERS = f"""## Other environment variables

These are read directly, not through a settings class:

| variable | meaning |
| --- | --- |
| `{CONFIG_ENV}` | Path of the config file (`--config` sets it for the workers a command starts). |
| `{SECRETS_DIR_ENV}` | Folder of secret files named after the variables they set. |
| `SLUICEWAY_PII_SECRET` | Key of a run's PII hashes; reaches workers in their environment only. |
| `SLUICEWAY_LOG_LEVEL` | Log level of the `sluiceway` command (default `WARNING`). |
"""


def render() -> str:
    """The whole of docs/configuration.md."""
    parts = [INTRO]
    for cls in settings_classes():
        parts.append(_class_section(cls))
    parts.append(OTHERS)
    return "\n".join(parts).rstrip() + "\n"


def write(path: Path) -> None:
    path.write_text(render(), encoding="utf-8")


def _class_section(cls: type[SluicewaySettings]) -> str:
    section = section_of(cls)
    title = f"`{section}`" if section else "top level"
    doc = " ".join((cls.__doc__ or "").split())
    lines = [
        f"## {title}: {cls.__name__}",
        "",
        doc,
        "",
        "| key | environment variable | type | default | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, field in cls.model_fields.items():
        key = f"{section}.{name}" if section else name
        env = " or ".join(f"`{n}`" for n in env_names(cls, name, field))
        lines.append(
            f"| `{key}` | {env} | {_type(field)} | {_default(field)} | {_describe(field)} |"
        )
    return "\n".join(lines) + "\n"


def _type(field: FieldInfo) -> str:
    return _type_name(field.annotation).replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])} (env: JSON)"
    if args:
        return " | ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "none"
    return str(getattr(annotation, "__name__", annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        made = field.default_factory()  # type: ignore[call-arg]
        return "empty" if made in ({}, []) else "see description"
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, SecretStr):
        return "(secret)"
    if field.default is None:
        return "none"
    return f"`{field.default}`"


def _describe(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split()).replace("|", "\\|")
    if SecretStr in (field.annotation, *typing.get_args(field.annotation)):
        text += f" Secret: may come from a `{FILE_SUFFIX}` variable; never shown."
    return text
