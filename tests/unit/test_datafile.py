"""The shared pieces of reading data: the strict base model and the one reading of a ValidationError."""

from __future__ import annotations

import pytest
from pydantic import Field, ValidationError, field_validator

from r4b_deploy.datafile import StrictModel, validation_problem


class _Gpu(StrictModel):
    name: str
    memory_gib: int = Field(gt=0)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value == "bad":
            raise ValueError("no GPU is called 'bad'")
        return value


class _Inventory(StrictModel):
    gpus: list[_Gpu]


def _problem(data: dict):
    with pytest.raises(ValidationError) as info:
        _Inventory.model_validate(data)
    return validation_problem(info.value)


def test_strict_models_refuse_unknown_keys_and_changes() -> None:
    problem = _problem({"gpus": [], "typo": 1})
    assert (problem.field, problem.top_field, problem.kind) == ("typo", "typo", "extra_forbidden")
    inventory = _Inventory.model_validate({"gpus": [{"name": "L4", "memory_gib": 24}]})
    with pytest.raises(ValidationError):
        inventory.gpus = []  # type: ignore[misc]


def test_the_problem_names_the_field_path_the_value_and_a_clean_message() -> None:
    problem = _problem({"gpus": [{"name": "L4", "memory_gib": 0}]})
    assert (problem.field, problem.top_field, problem.kind, problem.value) == (
        "gpus.0.memory_gib",
        "gpus",
        "greater_than",
        0,
    )
    assert problem.message == "Input should be greater than 0"
    problem = _problem({"gpus": [{"name": "bad", "memory_gib": 1}]})
    assert problem.message == "no GPU is called 'bad'"  # pydantic's "Value error, " prefix removed


def test_a_custom_field_namer() -> None:
    with pytest.raises(ValidationError) as info:
        _Inventory.model_validate({"gpus": [{"name": "L4"}]})
    problem = validation_problem(info.value, {"gpus": ["x"]}, lambda data, loc: f"{len(data['gpus'])}:{loc[-1]}")
    assert problem.field == "1:memory_gib" and problem.kind == "missing"
