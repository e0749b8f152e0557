"""The process environment tritonserver and its Python-backend stubs need.

- ``LD_LIBRARY_PATH`` starts with the running interpreter's libpython folder (``sysconfig``
  ``LIBDIR``): otherwise the stub may load a system ``libpython3.X.so`` whose build differs from
  the interpreter's stdlib (e.g. Debian 3.11.2 vs pyenv 3.11.7: ``undefined symbol
  _PyModule_Add``). The wheel's ``nvidia_pytriton.libs`` follows.
- ``PATH`` starts with ``sys.prefix/bin`` so the stub's embedded interpreter resolves the venv
  (its ``sys.prefix``, site-packages and ``.pth`` files, hence the editable install).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from cascade.errors import ServerStartError
from cascade.serving.locate import TritonInstall


def libpython_dir(config_vars: Mapping[str, object] | None = None) -> Path:
    """Folder holding the running interpreter's shared libpython.

    Raises ServerStartError when the interpreter was built without ``--enable-shared``: the
    Python-backend stub links libpython dynamically and must load this interpreter's copy.
    """
    cfg = config_vars if config_vars is not None else sysconfig.get_config_vars()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not cfg.get("Py_ENABLE_SHARED"):
        raise ServerStartError(
            f"the Python interpreter {sys.executable} has no shared libpython{version}.so "
            "(sysconfig Py_ENABLE_SHARED=0); Triton's python-backend stub needs it. Use an "
            "interpreter built with --enable-shared (e.g. `PYTHON_CONFIGURE_OPTS=--enable-shared "
            "pyenv install ...`, or the distribution's python3) and recreate the venv"
        )
    libdir = cfg.get("LIBDIR")
    if not libdir or not Path(str(libdir)).is_dir():
        raise ServerStartError(
            f"sysconfig LIBDIR={libdir!r} of {sys.executable} is not a folder; expected the "
            f"folder holding libpython{version}.so"
        )
    return Path(str(libdir))


def _prepend(first: list[str], existing: str | None) -> str:
    parts = list(first)
    for part in (existing or "").split(os.pathsep):
        if part and part not in parts:
            parts.append(part)
    return os.pathsep.join(parts)


def build_server_env(
    install: TritonInstall,
    base_env: Mapping[str, str] | None = None,
    config_vars: Mapping[str, object] | None = None,
    prefix: str | None = None,
) -> dict[str, str]:
    """Environment for tritonserver: ``base_env`` (default ``os.environ``) with LD_LIBRARY_PATH
    and PATH prepended as described in the module docstring."""
    env = dict(os.environ if base_env is None else base_env)
    if install.libs is not None:  # the wheel's binary; a system installation keeps its image's path
        env["LD_LIBRARY_PATH"] = _prepend(
            [str(libpython_dir(config_vars)), str(install.libs)], env.get("LD_LIBRARY_PATH")
        )
    env["PATH"] = _prepend([str(Path(prefix or sys.prefix) / "bin")], env.get("PATH"))
    env.pop("PYTHONHOME", None)  # would override the prefix the stub derives from PATH
    # The admin key reaches tritonserver on its command line only; the stubs (model code) never
    # inherit it (cascade.serving.admin).
    for name in ("CASCADE_TRITON_ADMIN_KEY", "CASCADE_TRITON_ADMIN_KEY_FILE"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # tritonserver's own Python (the stubs may ignore it: cascade.bundles.models)
    return env
