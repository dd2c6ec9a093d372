"""RenderOptions: the user's choices for the deployment folder, each one validated on the way in.

A bad value raises `UsageError` naming the option (as the CLI spells it) and the problem, at
construction: nothing later has to wonder whether a value is safe to put in a file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from r4b_deploy.datafile import validation_problem
from r4b_deploy.errors import UsageError
from r4b_deploy.render import validate

# The CLI's name for each field: error messages speak the user's language.
OPTION_FLAGS: dict[str, str] = {
    "host_port": "--port",
    "public": "--public",
    "base_image": "--base-image",
    "ca_bundle": "--ca-bundle",
    "wheelhouse": "--wheelhouse",
    "hf_cache_dir": "--hf-cache",
    "hf_token_env": "--hf-token-env",
    "extra_vllm_args": "--extra-vllm-arg",
    "model": "--model",
    "served_model_name": "--served-model-name",
    "shm_size_bytes": "--shm-size",
    "ipc_host": "--ipc-host",
    "ulimits": "--ulimit",
}

DEFAULT_HOST_PORT = 8000
DEFAULT_HF_CACHE = "~/.cache/huggingface"
DEFAULT_HF_TOKEN_ENV = "HF_TOKEN"
# Below this vLLM's engine dies at start ("Insufficient space in /dev/shm"); measured on the rehearsal.
MIN_SHM_SIZE_BYTES = 256 * 1024**2
# Docker carries sizes and limits as int64 (HostConfig.ShmSize, Ulimit.Soft/Hard): larger values
# are refused by the daemon, or wrap around, long after render said yes. A size goes through a
# float64 on the way (`docker run --shm-size`, compose v2's shm_size turned 2^63-1 into -2^63):
# the largest float64 below 2^63 is the largest size both read back as given.
MAX_SHM_SIZE_BYTES = 2**63 - 1024
MAX_ULIMIT = 2**63 - 1
# The kernel refuses RLIMIT_NOFILE above fs.nr_open, whose ceiling is this (sysctl_nr_open_max on
# 64-bit); most hosts keep fs.nr_open at 1048576. "Unlimited" (-1) is above it too.
MAX_NOFILE = 2**31 - 64
# `docker run --shm-size` units (binary multiples).
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"([0-9]+)([bkmg]?)", re.IGNORECASE)
# The names Docker accepts for --ulimit.
DOCKER_ULIMITS = frozenset(
    {
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    }
)


def _default_base_image() -> str:
    from r4b_deploy.pins import gpu_pins

    return gpu_pins().base_image


def _default_hf_cache_dir() -> Path:
    return Path(os.path.expanduser(DEFAULT_HF_CACHE))


def parse_size_bytes(value: str | int) -> int:
    """`512m`, `16g`, `1073741824` (Docker's binary units) -> bytes."""
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"expected a size such as 512m, 16g or a number of bytes, got {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _host_path(value: Any) -> Any:
    """Expand `~` and make a host path absolute, so the manifest says exactly what was used.

    Spaces are allowed (these paths are only read by r4b-deploy); shell and control characters are not.
    """
    if isinstance(value, str | Path):
        text = os.path.abspath(os.path.expanduser(str(value)))
        bad = validate.unsafe_character(text.replace(" ", ""))
        if bad is not None:
            raise ValueError(f"contains {bad}")
        return Path(text)
    return value


class RenderOptions(BaseModel):
    """What the user chose for the folder; the plan says what vLLM runs, this says how it is packaged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host_port: int = Field(default=DEFAULT_HOST_PORT, ge=1, le=65535)
    public: bool = False  # False: publish on 127.0.0.1 only; True: 0.0.0.0
    base_image: str = Field(default_factory=_default_base_image)
    ca_bundle: Path | None = None  # extra PEM bundle, trusted by apt, pip, requests and curl in the image
    wheelhouse: Path | None = None  # a host folder of wheels: pip installs offline from it
    hf_cache_dir: Path = Field(default_factory=_default_hf_cache_dir)
    hf_token_env: str = DEFAULT_HF_TOKEN_ENV  # the NAME of the variable; its value goes to r4b.env only
    extra_vllm_args: list[str] = []
    model: str | None = None  # HF id or absolute path; None: the plan's
    served_model_name: str | None = None  # None: the plan's
    shm_size_bytes: int | None = None  # None: the profile's default for GPU or rehearsal
    ipc_host: bool = False  # share the host's IPC namespace instead of a private /dev/shm
    ulimits: dict[str, int] = {}  # name -> soft = hard limit, -1 unlimited; none by default

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise usage_error(exc) from None

    @field_validator("base_image")
    @classmethod
    def _check_base_image(cls, value: str) -> str:
        return _checked(value, validate.IMAGE_REF, "an image reference such as nvidia/cuda:12.1.1-devel-ubuntu22.04")

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _check_ca_bundle(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        path = _host_path(value)
        if _from_manifest(info):
            return path  # the folder holds its copy; the host file may be gone since
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a readable PEM file ({exc.__class__.__name__})") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError(f"{path} holds no PEM certificate (no -----BEGIN CERTIFICATE----- line)")
        return path

    @field_validator("wheelhouse", mode="before")
    @classmethod
    def _check_wheelhouse(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        path = _host_path(value)
        if _from_manifest(info):
            return path  # the folder holds its links; the host folder may be gone since
        if not path.is_dir():
            raise ValueError(f"{path} is not a folder")
        if not any(p.is_file() for p in path.glob("*.whl")):
            raise ValueError(f"{path} holds no .whl file")
        return path

    @field_validator("hf_cache_dir", mode="before")
    @classmethod
    def _expand_hf_cache_dir(cls, value: Any) -> Any:
        return _host_path(value)

    @field_validator("hf_cache_dir")
    @classmethod
    def _check_hf_cache_dir(cls, value: Path, info: ValidationInfo) -> Path:
        # It becomes the host side of a compose volume: `:` or spaces would split it.
        _checked(str(value), validate.ABSOLUTE_PATH, "an absolute path of letters, digits and . _ @ + - /")
        # Missing is fine (the first download creates it); a file there would fail the container's mount.
        if not _from_manifest(info) and value.exists() and not value.is_dir():
            raise ValueError(f"{value} is not a folder; name the Hugging Face cache folder, or a new one")
        return value

    @field_validator("hf_token_env")
    @classmethod
    def _check_hf_token_env(cls, value: str) -> str:
        return _checked(value, validate.ENV_NAME, "an environment variable name such as HF_TOKEN")

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("/"):
            _checked(value, validate.ABSOLUTE_PATH, "an absolute path of letters, digits and . _ @ + - /")
            return os.path.normpath(value)
        return _checked(value, validate.HF_MODEL_ID, "a Hugging Face id such as YannQi/R-4B or an absolute path")

    @field_validator("served_model_name")
    @classmethod
    def _check_served_model_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _checked(value, validate.SERVED_MODEL_NAME, "a name of letters, digits and . _ - /, such as r4b")

    @field_validator("extra_vllm_args")
    @classmethod
    def _check_extra_vllm_args(cls, value: list[str]) -> list[str]:
        from r4b_deploy.launch.args import extra_arg_problem

        previous_takes_value = False
        for arg in value:
            # Before the pattern: its message quotes the argument, and `--api_key=SECRET` must not be quoted.
            problem = extra_arg_problem(arg)
            if problem is not None:
                raise ValueError(f"{problem[0]}: {problem[1]}")
            if arg.startswith("--"):
                _checked_arg(arg, validate.VLLM_FLAG, "a flag such as --enforce-eager or --max-log-len=100")
                previous_takes_value = "=" not in arg
            else:
                if not previous_takes_value:
                    raise ValueError(f"{arg!r} is not a flag: start with --, e.g. --max-log-len 100")
                _checked_arg(arg, validate.VLLM_ARG_VALUE, "a value of letters, digits and . _ : / , = + @ % -")
                previous_takes_value = False
        return value

    @field_validator("shm_size_bytes", mode="before")
    @classmethod
    def _parse_shm_size(cls, value: Any) -> Any:
        return None if value is None else parse_size_bytes(value)

    @field_validator("shm_size_bytes")
    @classmethod
    def _check_shm_size(cls, value: int | None) -> int | None:
        if value is not None and value < MIN_SHM_SIZE_BYTES:
            raise ValueError(f"{value} bytes is too small: vLLM needs at least {MIN_SHM_SIZE_BYTES // 1024**2}m")
        if value is not None and value > MAX_SHM_SIZE_BYTES:
            raise ValueError(
                f"{value} bytes is more than Docker accepts: at most {MAX_SHM_SIZE_BYTES // 1024**3}g "
                f"({MAX_SHM_SIZE_BYTES} bytes; Docker and compose read sizes as 64-bit floats)"
            )
        return value

    @field_validator("ulimits")
    @classmethod
    def _check_ulimits(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            if name not in DOCKER_ULIMITS:
                raise ValueError(f"unknown ulimit {name!r}; one of {', '.join(sorted(DOCKER_ULIMITS))}")
            if limit < -1:
                raise ValueError(f"{name}={limit}: a limit is -1 (unlimited) or a number >= 0")
            if limit > ulimit_max(name) or (limit == -1 and name == "nofile"):
                why = _NOFILE_LIMIT if name == "nofile" else _DOCKER_LIMIT
                raise ValueError(f"{name}={limit}: {why}: at most {ulimit_max(name)}")
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _check_ipc(self) -> RenderOptions:
        if self.ipc_host and self.shm_size_bytes is not None:
            raise ValueError("--ipc-host and --shm-size exclude each other: the host's /dev/shm has its own size")
        return self


_DOCKER_LIMIT = "more than Docker accepts (a 64-bit count)"
_NOFILE_LIMIT = "more than the kernel allows (fs.nr_open: at most 2^31-64, usually 1048576; never unlimited)"


def ulimit_max(name: str) -> int:
    """The largest value Docker and the kernel accept for the ulimit `name`."""
    return MAX_NOFILE if name == "nofile" else MAX_ULIMIT


# Set while a deployment's manifest is read: the host files it names (CA bundle, wheelhouse) may
# be gone since, as the folder holds its own copies. A ContextVar, because pydantic builds nested
# models through __init__, which sees no validation context.
_READING_MANIFEST: ContextVar[bool] = ContextVar("r4b_reading_manifest", default=False)


@contextlib.contextmanager
def reading_manifest() -> Iterator[None]:
    token = _READING_MANIFEST.set(True)
    try:
        yield
    finally:
        _READING_MANIFEST.reset(token)


def _from_manifest(info: ValidationInfo) -> bool:
    return _READING_MANIFEST.get() or bool(info.context and info.context.get("from_manifest"))


def _checked(value: str, pattern: re.Pattern[str], expected: str) -> str:
    reason = validate.problem(value, pattern, expected)
    if reason is not None:
        raise ValueError(reason)
    return value


def _checked_arg(arg: str, pattern: re.Pattern[str], expected: str) -> None:
    reason = validate.problem(arg, pattern, expected)
    if reason is not None:
        raise ValueError(f"{arg!r} {reason}")


def usage_error(exc: ValidationError) -> UsageError:
    """One line for the first problem, naming the option as the CLI spells it."""
    problem = validation_problem(exc)
    field = problem.top_field
    flag = OPTION_FLAGS.get(field)
    message = problem.message
    if problem.kind == "extra_forbidden":
        return UsageError(f"unknown render option {field!r}", fix=f"use one of {', '.join(OPTION_FLAGS)}")
    if flag is None:  # a model-level check: the message names its options
        return UsageError(message, fix="drop one of the conflicting options")
    if problem.kind != "value_error" and isinstance(problem.value, str | int | float | bool):
        message = f"{message} (got {problem.value!r})"
    return UsageError(f"{flag}: {message}", fix=f"give {flag} a valid value (r4b-deploy render --help)")
