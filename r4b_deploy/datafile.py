"""Read the toolkit's YAML data files (profiles/*.yaml) into pydantic models.

One loader for every data file, so each problem reads the same way: the file, the field, the
problem, and what to correct. yaml and pydantic's errors are imported lazily; the C loader is
used where PyYAML has it (it is ~10x faster, which `r4b-deploy plan`'s start-up feels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from r4b_deploy.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)
FieldNamer = Callable[[Any, Sequence[int | str]], str]
_VALUE_ERROR_PREFIX = "Value error, "  # pydantic's prefix for a ValueError a validator raised


class StrictModel(BaseModel):
    """The base of every model read from a data file: an unknown key is a typo to report, not to
    ignore, and what was read cannot be changed behind the reader's back."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


@dataclass(frozen=True)
class ValidationProblem:
    """The first problem pydantic found, in the parts every message about it is made of."""

    field: str  # the field's path as `field_namer` spells it ("gpus.0.name")
    top_field: str  # the first part of the path: the option or key the user wrote ("" for the whole model)
    message: str  # pydantic's text without its "Value error, " prefix
    kind: str  # pydantic's error type ("extra_forbidden", "greater_than", "value_error", ...)
    value: Any  # the input that failed


def validation_problem(
    exc: ValidationError, data: Any = None, field_namer: FieldNamer = dotted_field
) -> ValidationProblem:
    """The one place a pydantic ValidationError is read: callers turn it into their one-line error."""
    first = exc.errors()[0]
    loc = first["loc"]
    return ValidationProblem(
        field=field_namer(data, loc),
        top_field=str(loc[0]) if loc else "",
        message=str(first["msg"]).removeprefix(_VALUE_ERROR_PREFIX),
        kind=first["type"],
        value=first.get("input"),
    )


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
        problem = validation_problem(exc, data, field_namer)
        field = prefix + problem.field
        raise ConfigError(
            f"{path}: field {field!r}: {problem.message}", fix=fix or f"correct {field} in {path}"
        ) from exc


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
