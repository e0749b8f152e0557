"""Find the tritonserver binary and Python-backend files bundled in the ``nvidia-pytriton`` wheel,
or a system installation (the NGC ``tritonserver`` image: ``/opt/tritonserver``).

``CASCADE_TRITONSERVER_HOME`` (the serving image sets it to ``/opt/tritonserver``) selects a system
installation: ``bin/tritonserver``, ``backends/`` (used as ``--backend-directory`` as is, its
``python/`` stub built for the image's Python), ``caches/``; nothing is copied and the image's
library path is left alone.

Only the wheel's files are used (binary, python backend, stubs, caches, shared libraries), never
the PyTriton Python API. :func:`prepare_backend_dir` assembles the backend folder that Triton's
``--backend-directory`` expects: ``<root>/python/{libtriton_python.so,
triton_python_backend_utils.py, triton_python_backend_stub}`` with the stub for the running
interpreter's ``major.minor``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cascade.errors import NotFoundError

logger = logging.getLogger(__name__)

PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB_NAME = "triton_python_backend_stub"
LIBS_DIR_NAME = "nvidia_pytriton.libs"


@dataclass(frozen=True)
class TritonInstall:
    """Paths of one bundled Triton installation (all exist when returned by :func:`locate_triton`)."""

    binary: Path
    python_backend: Path
    stub: Path
    caches: Path
    libs: Path | None  # the wheel's bundled shared libraries; None for a system installation
    python_version: tuple[int, int]
    backends: Path | None = None  # a system installation's --backend-directory (used as is)

    @property
    def system(self) -> bool:
        return self.backends is not None


def pytriton_package_dir() -> Path:
    """The installed ``pytriton`` package folder, found without importing it."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            "package `pytriton` is not installed: install `nvidia-pytriton==0.7.0` "
            "(it bundles the tritonserver binary)"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise NotFoundError(f"{what} not found at {path}: reinstall `nvidia-pytriton==0.7.0`")
    return path


TRITON_HOME_ENV = "CASCADE_TRITONSERVER_HOME"


def locate_system_triton(home: Path, python_version: tuple[int, int] | None = None) -> TritonInstall:
    """A tritonserver installed under ``home`` (NGC image layout); NotFoundError naming what is missing."""
    home = Path(home)
    version = python_version or (sys.version_info.major, sys.version_info.minor)
    where = f"{TRITON_HOME_ENV}={home}"
    if not (home / "bin" / "tritonserver").is_file():
        raise NotFoundError(f"{where}: {home / 'bin' / 'tritonserver'} not found; expected a Triton "
                            "installation (the NGC tritonserver image has it at /opt/tritonserver)")
    python_backend = home / "backends" / "python"
    for name in (*PYTHON_BACKEND_FILES, STUB_NAME):
        if not (python_backend / name).is_file():
            raise NotFoundError(f"{where}: python backend file {python_backend / name} not found")
    return TritonInstall(binary=home / "bin" / "tritonserver", python_backend=python_backend,
                         stub=python_backend / STUB_NAME, caches=home / "caches", libs=None,
                         python_version=version, backends=home / "backends")


def locate_triton(
    package_dir: Path | None = None, python_version: tuple[int, int] | None = None
) -> TritonInstall:
    """Locate the tritonserver files: ``CASCADE_TRITONSERVER_HOME`` when set (and no
    ``package_dir`` is given), else the ones bundled in nvidia-pytriton.

    ``package_dir`` is the ``pytriton`` package folder (default: the installed one);
    ``python_version`` picks the backend stub (default: the running interpreter's).
    Raises NotFoundError naming the missing file.
    """
    home = os.environ.get(TRITON_HOME_ENV, "").strip()
    if home and package_dir is None:
        return locate_system_triton(Path(home), python_version)
    pkg = Path(package_dir) if package_dir is not None else pytriton_package_dir()
    version = python_version or (sys.version_info.major, sys.version_info.minor)
    root = _require(pkg / "tritonserver", "tritonserver folder")
    stubs = root / "python_backend_stubs"
    stub = stubs / f"{version[0]}.{version[1]}" / STUB_NAME
    if not stub.is_file():
        available = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise NotFoundError(
            f"python backend stub for Python {version[0]}.{version[1]} not found at {stub}; "
            f"the wheel has stubs for {available or 'no versions'}"
        )
    python_backend = _require(root / "backends" / "python", "python backend folder")
    for name in PYTHON_BACKEND_FILES:
        _require(python_backend / name, f"python backend file {name}")
    return TritonInstall(
        binary=_require(root / "bin" / "tritonserver", "tritonserver binary"),
        python_backend=python_backend,
        stub=stub,
        caches=_require(root / "caches", "tritonserver caches folder"),
        libs=_require(pkg.parent / LIBS_DIR_NAME, "bundled shared libraries folder"),
        python_version=version,
    )


def _same_file(src: Path, dst: Path) -> bool:
    if not dst.is_file():
        return False
    a, b = src.stat(), dst.stat()
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def prepare_backend_dir(install: TritonInstall, root: Path) -> Path:
    """Assemble ``root/python/`` for ``--backend-directory root`` and return ``root``.

    Files are copied (with mtimes) only when missing or changed; each copy goes to a temporary
    name first and is renamed, so concurrent starts never see a half-written file.
    """
    target = Path(root) / "python"
    target.mkdir(parents=True, exist_ok=True)
    sources = [install.python_backend / name for name in PYTHON_BACKEND_FILES] + [install.stub]
    for src in sources:
        dst = target / src.name
        if _same_file(src, dst):
            continue
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{src.name}.")
        os.close(fd)
        shutil.copy2(src, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
        logger.debug("copied %s -> %s", src, dst)
    return Path(root)
