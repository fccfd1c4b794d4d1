"""Compiles the CPU kernels (`cpu_decode.c`, `cpu_fused.c`, `cpu_linear.c`,
`cpu_quantized.c`) for this machine once, and loads them with ctypes.

NOTE: built here rather than shipped: `-march=native` takes whatever vector units the CPU
has (AVX-512 where present), and a C file with no torch headers compiles in about a
second, against minutes for a torch C++ extension. The library is kept under the build
folder, named by a hash of the source, the flags, the compiler and the CPU's features,
so a changed file, compiler or machine (a home folder shared over the network) builds
anew. `-fopenmp` links `libgomp.so.1`, which the loader resolves to the copy torch has
already loaded: the kernel runs on torch's OpenMP threads, not on a second team.
"""

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from functools import cache
from pathlib import Path

from common.paths import default_home

logger = logging.getLogger(__name__)

SOURCES = ("cpu_decode", "cpu_fused", "cpu_linear", "cpu_quantized")  # kernels/<name>.c
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")
COMPILE_TIMEOUT_S = 120


class KernelBuildError(RuntimeError):
    """The CPU kernel could not be compiled or loaded; the message says why."""


_lock = threading.Lock()
_loaded: dict[Path, ctypes.CDLL] = {}


def load_library(name: str, build_dir: Path) -> ctypes.CDLL:
    """The compiled library of `kernels/<name>.c`, built into `build_dir` first if needed.

    Raises:
        KernelBuildError: no C compiler, a failed compile, or a library that will not load.
    """
    if name not in SOURCES:
        raise ValueError(f"no kernel source {name!r}; the sources are {', '.join(SOURCES)}")
    source = Path(__file__).with_name(f"{name}.c")
    with _lock:
        path = build_dir / f"{name}-{_build_key(source)}.so"
        if path not in _loaded:
            if not path.exists():
                _compile(source, path)
            try:
                library = ctypes.CDLL(str(path))
            except OSError as error:
                raise KernelBuildError(f"cannot load {path}: {error}") from error
            _declare(library, name)
            _loaded[path] = library
        return _loaded[path]


def default_build_dir() -> Path:
    """`<home>/kernels`, or a folder of this user's in the temp directory where the home
    cannot be written (a read-only home in a container)."""
    home_dir = default_home() / "kernels"
    try:
        home_dir.mkdir(parents=True, exist_ok=True)
        if os.access(home_dir, os.W_OK):
            return home_dir
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"pagedrag-kernels-{os.getuid()}"


def _compiler() -> str:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise KernelBuildError("no C compiler found (install gcc)")
    return compiler


def _build_key(source: Path) -> str:
    """Changes with the source, the flags, the compiler and the CPU's instruction sets."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update(" ".join(FLAGS).encode())
    digest.update(_compiler().encode())
    digest.update(" ".join(sorted(cpu_flags())).encode())
    return digest.hexdigest()[:16]


@cache
def cpu_flags() -> frozenset[str]:
    """The instruction sets this CPU reports (`/proc/cpuinfo`); empty where unreadable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def _compile(source: Path, path: Path) -> None:
    """Compile into a temporary file beside `path`, then rename it into place, so two
    processes building at once never load a half-written library."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(dir=path.parent, suffix=".so.tmp")
    os.close(fd)
    command = [_compiler(), *FLAGS, "-o", scratch, str(source)]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            raise KernelBuildError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
        os.replace(scratch, path)
        logger.info("built a CPU kernel: %s", path)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KernelBuildError(f"{' '.join(command)} failed: {error}") from error
    finally:
        Path(scratch).unlink(missing_ok=True)


def _declare(library: ctypes.CDLL, name: str) -> None:
    """Argument types of the library's functions (ctypes would guess them wrong)."""
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    if name == "cpu_decode":
        function = library.paged_decode_attention
        function.argtypes = [pointer] * 6 + [integer] * 6 + [ctypes.c_float, integer]
        function.restype = integer
    elif name == "cpu_fused":
        library.fused_rms_norm.argtypes = [pointer] * 4 + [integer] * 2 + [ctypes.c_float, integer]
        library.rotate_heads.argtypes = [pointer] * 3 + [integer] * 3 + [ctypes.c_int64, integer]
        for function in (library.fused_rms_norm, library.rotate_heads):
            function.restype = integer
    elif name == "cpu_quantized":
        library.linear_int4.argtypes = [pointer] * 5 + [integer] * 4
        library.linear_int8.argtypes = [pointer] * 5 + [integer] * 3
        library.linear_quantized_supported.argtypes = []
        for function in (
            library.linear_int4,
            library.linear_int8,
            library.linear_quantized_supported,
        ):
            function.restype = integer
    else:
        library.linear_bf16.argtypes = [pointer] * 4 + [integer] * 3
        library.linear_bf16.restype = integer
        library.linear_bf16_supported.argtypes = []
        library.linear_bf16_supported.restype = integer
        library.linear_f32_bf16w.argtypes = [pointer] * 4 + [integer] * 3
        library.linear_f32_bf16w.restype = integer
        library.linear_f32_bf16w_supported.argtypes = []
        library.linear_f32_bf16w_supported.restype = integer
