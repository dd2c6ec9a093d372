"""Printing helpers shared by the command modules: JSON for machines, rich for people.

rich is imported inside the functions so that commands that print JSON never load it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [to_jsonable(o) for o in obj]
    return obj


def print_json(obj: Any) -> None:
    """One JSON document on stdout, stable key order as the model defines it."""
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False):  # -> rich.console.Console
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)
