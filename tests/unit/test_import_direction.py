"""The import direction docs/architecture.md states, read from every `import` in r4b_deploy/ (module
level, inside functions and under TYPE_CHECKING alike): a package that starts importing a layer
above it fails here, not in review."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import r4b_deploy

PACKAGE_DIR = Path(r4b_deploy.__file__).parent
BASE = {"errors", "paths", "atomic", "datafile"}


@dataclass(frozen=True)
class Import:
    source: str  # "hardware/probe.py"
    target: str  # "r4b_deploy.planning.plan" or "docker"
    typing_only: bool  # under `if TYPE_CHECKING:`
    module_level: bool  # executed when the module is imported

    @property
    def unit(self) -> str:
        """The target as the architecture names it: a package ("planning") or a module ("spec")."""
        parts = self.target.split(".")
        return parts[1] if len(parts) > 1 else "r4b_deploy"


def _imports() -> Iterator[Import]:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        source = path.relative_to(PACKAGE_DIR).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_level = {id(node) for node in tree.body}
        typing_only: set[int] = set()
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                typing_only |= {id(inner) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module]
            else:
                continue
            for target in targets:
                yield Import(source, target, id(node) in typing_only, id(node) in module_level)


IMPORTS = list(_imports())


def _package(source: str) -> str:
    return source.split("/")[0] if "/" in source else source.removesuffix(".py")


def _internal_units(package: str) -> set[str]:
    return {
        i.unit
        for i in IMPORTS
        if _package(i.source) == package and i.target.startswith("r4b_deploy") and i.unit != package
    }


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("hardware", BASE),
        ("client", BASE | {"spec"}),
        ("engine", BASE | {"pins"}),
        ("rehearsal", BASE | {"pins", "r4b_deploy"}),
        ("checks", BASE | {"client", "spec"}),
        ("bench", BASE | {"client", "spec", "r4b_deploy"}),
        ("planning", BASE | {"hardware", "spec", "pins", "rehearsal", "launch"}),
        ("report", BASE | {"bench", "checks", "planning", "render", "r4b_deploy"}),
    ],
)
def test_lower_layers_import_nothing_above_them(package: str, allowed: set[str]) -> None:
    assert _internal_units(package) <= allowed, sorted(_internal_units(package) - allowed)


def test_planning_reaches_launch_and_rehearsal_only_where_documented() -> None:
    # drift.py compares with vLLM's log (launch/startup_log.py); rehearsal.py reads the tiny model's sizes.
    reach = {
        (i.source, i.target)
        for i in IMPORTS
        if i.source.startswith("planning/") and i.unit in ("launch", "rehearsal") and i.target.startswith("r4b_deploy")
    }
    assert {source for source, _ in reach} <= {"planning/drift.py", "planning/rehearsal.py"}, sorted(reach)
    assert not [i for i in IMPORTS if i.source.startswith("planning/") and i.unit == "launch" and i.module_level]


def test_only_the_cli_runs_the_pipeline_and_nothing_imports_the_cli() -> None:
    pipeline_users = {i.source for i in IMPORTS if i.target == "r4b_deploy.pipeline"}
    assert {_package(s) for s in pipeline_users} <= {"cli"}, sorted(pipeline_users)
    # up's parts: the checks run only inside `up`; its events and interrupt flag reach the CLI too.
    checks_users = {i.source for i in IMPORTS if i.target == "r4b_deploy.pipeline_checks"}
    assert checks_users <= {"pipeline.py"}, sorted(checks_users)
    events_users = {i.source for i in IMPORTS if i.target == "r4b_deploy.pipeline_events"}
    assert {_package(s) for s in events_users} <= {"cli", "pipeline", "pipeline_checks"}, sorted(events_users)
    cli_users = {i.source for i in IMPORTS if i.unit == "cli" and not i.source.startswith("cli/")}
    assert cli_users <= {"__main__.py"}, sorted(cli_users)


def test_launch_reaches_no_template_and_no_writer_of_render() -> None:
    reach = {i.target for i in IMPORTS if i.source.startswith("launch/") and i.unit == "render"}
    assert reach <= {"r4b_deploy.render.options"}, sorted(reach)


@pytest.mark.parametrize(
    ("library", "packages"),
    [
        ("pynvml", {"hardware"}),
        ("docker", {"launch"}),
        ("jinja2", {"render"}),
        ("rich", {"cli"}),
        ("matplotlib", {"bench"}),
        ("aiohttp", {"client"}),  # bench names the session's type only under TYPE_CHECKING
        ("requests", {"client", "launch"}),  # launch: docker-py's exceptions
    ],
)
def test_third_party_libraries_stay_in_their_package(library: str, packages: set[str]) -> None:
    users = {
        i.source for i in IMPORTS if i.target.split(".")[0] == library and not (library == "aiohttp" and i.typing_only)
    }
    assert {_package(s) for s in users} <= packages, sorted(users)


@pytest.mark.parametrize("library", ["docker", "jinja2", "rich", "aiohttp", "matplotlib", "pynvml"])
def test_heavy_libraries_are_imported_inside_functions(library: str) -> None:
    # client/session.py imports requests at module level: it is itself imported only lazily.
    eager = [i.source for i in IMPORTS if i.target.split(".")[0] == library and i.module_level and not i.typing_only]
    assert not eager, eager
