"""The engine's native CPU kernels: C sources built for this machine on first use, cached, loaded with ctypes.

A kernel (fastfood_kernel.c) is built with the machine's C compiler (cc, gcc or clang on
PATH, or the one `configure` names: the setting IDLAB_C_COMPILER) for this CPU (-O3 -march=native) into a
cache folder (~/.cache/idlab/kernels, or IDLAB_KERNEL_CACHE_DIR), keyed by its source, the compiler and the
CPU, so a sweep's processes build it once (about a second). Where it cannot be built or loaded (no compiler,
a read-only cache, an unknown platform) `library` returns None after one warning in the log, and the engine
computes with torch ops: the same numbers within float32 rounding. `disabled` switches every kernel off
inside a block, as on such a machine (the tests' reference).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c11")

_enabled = True
_libraries: dict[Path, ctypes.CDLL | None] = {}   # each source's library, or None where it cannot be had
_where: dict[str, Path | str | None] = {"cache": None, "compiler": None}
_told: set[str] = set()   # the warnings given once for all kernels


def configure(cache: Path | str | None = None, compiler: str | None = None) -> None:
    """Where the kernels are cached and which C compiler builds them (None: the defaults); before their use."""
    _where.update(cache=Path(cache) if cache else None, compiler=compiler or None)
    _libraries.clear()
    _told.clear()


def cache_folder() -> Path:
    return Path(_where["cache"] or Path.home() / ".cache" / "idlab" / "kernels")


def enabled() -> bool:
    """Whether the kernels may be used: False inside `disabled`."""
    return _enabled


@contextmanager
def disabled():
    """Compute with torch ops inside the block, as on a machine without a C compiler."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def library(source: Path) -> ctypes.CDLL | None:
    """The built and loaded kernel of this C source (built once per machine), or None where it cannot be had."""
    if source not in _libraries:
        _libraries[source] = _load(source)
    return _libraries[source]


def loaded(source: Path) -> ctypes.CDLL | None:
    """The kernel of this source if `library` has loaded it, without building anything (None otherwise)."""
    return _libraries.get(source)


def _load(source: Path) -> ctypes.CDLL | None:
    name = source.stem
    compiler = _where["compiler"] or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None or (_where["compiler"] and not shutil.which(str(compiler))):
        if "no compiler" not in _told:
            _told.add("no compiler")
            log.warning("no C compiler (cc, gcc or clang, or IDLAB_C_COMPILER) to build the native kernels "
                        "(%s first); computing with torch ops (slower, same results)", name)
        return None
    try:
        return ctypes.CDLL(str(_build(source, str(compiler))))
    except (OSError, subprocess.SubprocessError) as problem:
        log.warning("%s: the native kernel could not be built or loaded (%s); computing with torch ops "
                    "(slower, same results)", name, str(problem)[-300:] or type(problem).__name__)
        return None


def _build(source: Path, compiler: str) -> Path:
    """The shared library for this source, compiler and CPU: built once, then found in the cache."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([source.read_text(), compiler, version, " ".join(FLAGS), platform.machine(),
                                     _cpu_flags()]).encode()).hexdigest()[:16]
    target = cache_folder() / f"{source.stem.removesuffix('_kernel')}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:   # built aside, then moved in atomically
        built = Path(folder) / target.name
        result = subprocess.run([compiler, *FLAGS, str(source), "-o", str(built)], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise OSError(f"{compiler} failed: {result.stderr.strip() or result.stdout.strip()}")
        os.replace(built, target)
    log.info("%s: built the native kernel %s", source.stem, target)
    return target


def _cpu_flags() -> str:
    """What -march=native compiles for: the CPU's model and feature flags (Linux), else the processor name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))}))
