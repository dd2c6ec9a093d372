"""Does this vLLM install accept r4b-deploy's `vllm serve` arguments? Asked of vLLM itself.

A script, run by the Python that has vLLM (an image's `/opt/venv/bin/python`, a venv's python),
with no GPU: it builds the `vllm serve` parser exactly as the `vllm` command does (the serve
subcommand's own `subparser_init`), parses each argument list, runs the subcommand's `validate`
and `AsyncEngineArgs.from_cli_args` (everything before the model is loaded), and looks up the
model architecture and reasoning parsers in that vLLM's registries. Help text is never read: a
flag is accepted when vLLM's argparse parser accepts it.

It imports nothing from r4b_deploy (the image has only vLLM), so the caller sends the argument
lists, made by `r4b_deploy.launch.args.vllm_serve_args`, as JSON on stdin:

    {"expect_version": "0.33.0",
     "argument_lists": {"heavy": ["YannQi/R-4B", "--served-model-name", "r4b", ...], ...},
     "architectures": ["RForConditionalGeneration"],
     "reasoning_parsers": ["qwen3"]}

and reads one JSON object from the last stdout line that starts with `RESULT_PREFIX`:
`vllm_version`, `version_ok`, `platform` (as vLLM detected it), `argument_lists` (per name: `ok`,
`stage` reached or failed, `error`, `values`: the parsed value of every destination the list set,
`skipped` when a release's engine arguments need the model files), `architectures`,
`reasoning_parsers`, `ok`. Exit status: 0 all passed, 1 a check failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "R4B-VLLM-CHECK "
# vLLM moved its argparse subclass between releases; the first module that has it wins.
PARSER_MODULES = ("vllm.utils.argparse_utils", "vllm.utils")
ERROR_CHARS = 2000  # an error's text is cut to this (argparse usage lines are long)


def _flexible_parser_class() -> type[argparse.ArgumentParser]:
    for name in PARSER_MODULES:
        with contextlib.suppress(ImportError, AttributeError):
            return importlib.import_module(name).FlexibleArgumentParser
    raise ImportError(f"FlexibleArgumentParser is in none of {', '.join(PARSER_MODULES)}")


def _serve_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The top-level `vllm` parser with the serve subcommand, built as vllm/entrypoints/cli/main.py does."""
    from vllm.entrypoints.cli import serve

    parser = _flexible_parser_class()(prog="vllm", description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    (command,) = [c for c in serve.cmd_init() if c.name == "serve"]
    command.subparser_init(subparsers).set_defaults(dispatch_function=command.cmd)
    return parser, command


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _set_destinations(parser: argparse.ArgumentParser, args: list[str], namespace: argparse.Namespace) -> dict:
    """The parsed value of each destination an option in `args` names (plus the positional model)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    by_flag = {flag: action.dest for action in sub._actions for flag in action.option_strings}
    dests = {by_flag[a.split("=", 1)[0]] for a in args if a.split("=", 1)[0] in by_flag}
    dests.add("model_tag")
    return {d: _jsonable(getattr(namespace, d, None)) for d in sorted(dests)}


def check_arguments(args: list[str]) -> dict:
    """Parse `vllm serve ARGS`, validate, make the engine arguments; report how far it got."""
    result: dict[str, Any] = {"ok": False, "stage": "parse", "error": None, "values": {}}
    captured = io.StringIO()
    try:
        parser, command = _serve_parser()
        with contextlib.redirect_stderr(captured):
            namespace = parser.parse_args(["serve", *args])
        result["values"] = _set_destinations(parser, args, namespace)
        result["stage"] = "validate"
        command.validate(namespace)
        result["stage"] = "engine_args"
        from vllm import AsyncEngineArgs

        if getattr(namespace, "model_tag", None) is not None:
            namespace.model = namespace.model_tag  # what ServeSubcommand.cmd does first
        try:
            AsyncEngineArgs.from_cli_args(namespace)
        except Exception as exc:
            if not _needs_the_model(exc):
                raise
            # Some releases look the model up on the Hub here: past the flags, and offline by design.
            skipped = f"engine arguments need the model files: {exc}"
            result.update(ok=True, stage="validate", skipped=skipped[:ERROR_CHARS])
            return result
    except SystemExit as exc:  # argparse reports a rejected argument by exiting
        result["error"] = (captured.getvalue().strip() or f"parser exited with {exc.code}")[-ERROR_CHARS:]
        return result
    except Exception as exc:  # any other refusal is a failed check, reported, not raised
        result["error"] = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        return result
    result.update(ok=True, stage="done")
    return result


def _needs_the_model(exc: BaseException) -> bool:
    """An error from looking the model up on the Hub (HF_HUB_OFFLINE), not from a flag."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__module__.split(".")[0] == "huggingface_hub":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def check_architecture(name: str) -> dict:
    """Registered in this vLLM's model registry, and its model class inspectable (imports cleanly)."""
    from vllm import ModelRegistry

    result: dict[str, Any] = {"registered": name in ModelRegistry.get_supported_archs()}
    inspect = getattr(ModelRegistry, "_try_inspect_model_cls", None)
    if result["registered"] and inspect is not None:
        try:
            info = inspect(name)
        except Exception as exc:  # reported: the registry knows the name but cannot load it
            result["inspect_error"] = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
            info = None
        result["inspected"] = info is not None
        result["supports_multimodal"] = getattr(info, "supports_multimodal", None)
    result["ok"] = result["registered"] and result.get("inspected", True) is not False
    return result


def check_reasoning_parser(name: str) -> dict:
    from vllm.reasoning import ReasoningParserManager

    try:
        parser_class = ReasoningParserManager.get_reasoning_parser(name)
    except Exception as exc:  # KeyError in most releases
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]}
    return {"ok": True, "class": f"{parser_class.__module__}.{parser_class.__qualname__}"}


def _platform() -> str:
    """The platform vLLM detected ("cuda" on a GPU host; "cpu" for a CPU build): its defaults shape parsing."""
    from vllm.platforms import current_platform

    return str(getattr(current_platform, "device_type", "") or type(current_platform).__name__)


def run(request: dict) -> dict:
    version = importlib.metadata.version("vllm")
    expect = request.get("expect_version")
    report: dict[str, Any] = {
        "vllm_version": version,
        "platform": _platform(),
        # A CPU build's metadata may carry a local suffix ("0.32.0+cpu"): the release is what is pinned.
        "version_ok": expect is None or version.split("+", 1)[0] == expect,
        "argument_lists": {name: check_arguments(list(args)) for name, args in request["argument_lists"].items()},
        "architectures": {name: check_architecture(name) for name in request.get("architectures", [])},
        "reasoning_parsers": {name: check_reasoning_parser(name) for name in request.get("reasoning_parsers", [])},
    }
    report["ok"] = (
        report["version_ok"]
        and all(r["ok"] for r in report["argument_lists"].values())
        and all(r["ok"] for r in report["architectures"].values())
        and all(r["ok"] for r in report["reasoning_parsers"].values())
    )
    return report


def ensure_venv(root: Path, requirements: list[str], python: str = sys.executable) -> Path:
    """A venv at `root/venv` with `requirements` installed (pip's own index and configuration),
    reused while `root/requirements.txt` names the same requirements. Returns the venv's python.

    For the releases checked outside an image (a GPU release's wheels install on any x86_64 Linux;
    nothing here needs a GPU). The stamp is written last: a half-made venv is rebuilt, never used.
    """
    venv, stamp = root / "venv", root / "requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if stamp.is_file() and stamp.read_text() == wanted and (venv / "bin" / "python").exists():
        return venv / "bin" / "python"
    stamp.unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]  # pip's cache keeps the wheels
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *requirements], check=True)
    stamp.write_text(wanted)
    return venv / "bin" / "python"


def main() -> int:
    result_stream = sys.stdout
    # vLLM's logger writes to stdout: keep it (and anything else) off the result's stream.
    sys.stdout = sys.stderr
    try:
        request = json.load(sys.stdin)
        if not isinstance(request, dict) or not isinstance(request.get("argument_lists"), dict):
            raise ValueError('expected {"argument_lists": {name: [arg, ...]}, ...}')
    except ValueError as exc:
        print(f"vllm_check: bad request on stdin: {exc}", file=sys.stderr)
        return 2
    report = run(request)
    result_stream.write(RESULT_PREFIX + json.dumps(report, sort_keys=True) + "\n")
    result_stream.flush()
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
