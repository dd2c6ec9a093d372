"""README.md and docs/architecture.md against the code they describe: a module, a command, an
option or an exit code added without its line in the docs fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import r4b_deploy
from r4b_deploy.cli.main import cli
from r4b_deploy.cli.options import PLANNING_KEYS
from r4b_deploy.engine import SUBCOMMANDS
from r4b_deploy.errors import ExitCode

PACKAGE_DIR = Path(r4b_deploy.__file__).parent
REPO = PACKAGE_DIR.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """From `heading` to the next heading of its level or above (its subsections included)."""
    start = text.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    following = re.search(rf"^#{{1,{level}}} ", text[start + len(heading) :], flags=re.MULTILINE)
    return text[start : start + len(heading) + (following.start() if following else len(text))]


def _has_code(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def test_the_module_table_lists_every_module() -> None:
    table = _section(ARCHITECTURE, "## Modules and their public calls")
    modules = [
        path.relative_to(PACKAGE_DIR).as_posix()
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if path.name != "__init__.py" or _has_code(path)
    ]
    missing = [m for m in modules if f"`{m}`" not in table and f"`{m}` (" not in table]
    assert not missing, f"docs/architecture.md's module table lacks {missing}"


def test_the_readme_command_table_lists_every_command_and_engine_subcommand() -> None:
    table = _section(README, "## Commands")
    commands = cli.list_commands(None)  # type: ignore[arg-type]
    assert [c for c in commands if f"`{c}" not in table and f"r4b-deploy {c}" not in table] == []
    engine_row = next(line for line in table.splitlines() if "r4b-deploy engine" in line)
    assert [s for s in SUBCOMMANDS if s not in engine_row] == []


def test_the_readme_names_every_planning_option() -> None:
    options = _section(README, "## Commands")
    flags = ["--" + key.replace("_", "-") for key in PLANNING_KEYS]
    assert [f for f in flags if f"`{f}" not in options] == []


def test_every_exit_code_is_documented() -> None:
    readme_table = _section(README, "### Exit codes")
    arch_line = _section(ARCHITECTURE, "## Exit codes")
    for code in ExitCode:
        assert f"| {int(code)} |" in readme_table, code
        assert re.search(rf"(^|· ){int(code)} ", arch_line, flags=re.MULTILINE), code
