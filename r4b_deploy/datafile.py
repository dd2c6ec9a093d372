"""Read the toolkit's YAML data files (profiles/*.yaml) into pydantic models.

One loader for every data file, so each problem reads the same way: the file, the field, the
problem, and what to correct. yaml and pydantic's errors are imported lazily; the C loader is
used where PyYAML has it (it is ~10x faster, which `r4b-deploy plan`'s start-up feels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from r4b_deploy.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)
FieldNamer = Callable[[Any, Sequence[int | str]], str]


def read_yaml(path: Path, what: str, fix: str | None = None) -> Any:
    """Parse one YAML file; unreadable or malformed -> ConfigError naming `what` and the file."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(path.read_text(), Loader=loader)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}", fix=fix) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {what} is not valid YAML: {exc}".replace("\n", " "), fix=fix) from exc


def dotted_field(data: Any, loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def validate_data(
    model: type[ModelT],
    data: Any,
    path: Path,
    *,
    section: str | None = None,
    fix: str | None = None,
    field_namer: FieldNamer = dotted_field,
) -> ModelT:
    """Validate parsed data (or its top-level `section`); the first problem -> ConfigError."""
    from pydantic import ValidationError

    prefix = f"{section}." if section else ""
    if section is not None:
        if not isinstance(data, dict) or section not in data:
            raise ConfigError(f"{path}: section {section!r} is missing", fix=fix or f"add {section}: to {path}")
        data = data[section]
    if not isinstance(data, dict):
        where = f" in {section!r}" if section else ""
        raise ConfigError(f"{path}: expected a mapping of fields{where}, found {type(data).__name__}", fix=fix)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = prefix + field_namer(data, first["loc"])
        raise ConfigError(f"{path}: field {field!r}: {first['msg']}", fix=fix or f"correct {field} in {path}") from exc


def load_data_file(
    model: type[ModelT],
    path: Path,
    what: str,
    *,
    section: str | None = None,
    fix: str | None = None,
    field_namer: FieldNamer = dotted_field,
) -> ModelT:
    """read_yaml + validate_data: the whole job for most data files."""
    return validate_data(model, read_yaml(path, what, fix), path, section=section, fix=fix, field_namer=field_namer)
