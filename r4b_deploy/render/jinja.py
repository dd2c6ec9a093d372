"""The one jinja2 Environment the renderer uses.

StrictUndefined: a missing variable is an error, never an empty string in a Dockerfile.
Autoescape only for `*.html.j2` (the report page: every string a server or user sent is
escaped); the other outputs are Dockerfiles, YAML and env files, not HTML. Templates only loop
and branch; every value is computed (and validated) in Python and quoted by the filters below.
jinja2 is imported here, inside functions, so commands that do not render never load it.
"""

from __future__ import annotations

import json
import shlex
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


def quote_json(value: Any) -> str:
    """A JSON scalar or array: a valid YAML flow value and a Dockerfile exec-form/ENV value."""
    return json.dumps(value, ensure_ascii=True)


def quote_shell(value: str) -> str:
    """A word for /bin/sh; validated values come through unchanged."""
    return shlex.quote(str(value))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    import jinja2

    from r4b_deploy.paths import templates_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False, default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = quote_json
    env.filters["sh"] = quote_shell
    return env


def trusted_html(text: str) -> Any:
    """Mark markup this package built itself (an SVG chart whose strings it escaped) as safe in an
    autoescaping template; never pass text that came from outside through it."""
    import markupsafe

    return markupsafe.Markup(text)


def render_template(name: str, **context: Any) -> str:
    """Render templates/<name> with `context`; a missing variable raises jinja2.UndefinedError."""
    return environment().get_template(name).render(**context)
