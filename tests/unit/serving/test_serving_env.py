"""The environment that lets the python-backend stub load this interpreter and its venv."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

from cascade.errors import ServerStartError
from cascade.serving.env import build_server_env, libpython_dir
from cascade.serving.locate import locate_triton

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_libpython_dir_holds_this_interpreters_shared_library() -> None:
    libdir = libpython_dir()
    assert libdir == Path(sysconfig.get_config_var("LIBDIR"))
    assert list(libdir.glob(f"libpython{PY}*.so*"))


def test_ld_library_path_starts_with_libpython_then_bundled_libs() -> None:
    install = locate_triton()
    env = build_server_env(install, base_env={"LD_LIBRARY_PATH": "/opt/a:/opt/b", "PATH": "/usr/bin"})
    parts = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert parts[0] == str(libpython_dir())
    assert parts[1] == str(install.libs)
    assert parts[2:] == ["/opt/a", "/opt/b"]


def test_path_starts_with_the_venv_bin_and_keeps_the_rest() -> None:
    install = locate_triton()
    base = {"PATH": f"/usr/bin{os.pathsep}{sys.prefix}/bin{os.pathsep}/bin"}
    env = build_server_env(install, base_env=base)
    assert env["PATH"].split(os.pathsep) == [f"{sys.prefix}/bin", "/usr/bin", "/bin"]
    assert Path(sys.prefix, "bin", "python").exists()


def test_missing_variables_are_created_and_pythonhome_dropped() -> None:
    install = locate_triton()
    env = build_server_env(install, base_env={"PYTHONHOME": "/elsewhere", "KEEP": "1"}, prefix="/venv")
    assert env["PATH"] == "/venv/bin"
    assert env["LD_LIBRARY_PATH"] == f"{libpython_dir()}{os.pathsep}{install.libs}"
    assert "PYTHONHOME" not in env and env["KEEP"] == "1"


def test_default_base_is_os_environ_and_it_is_not_modified() -> None:
    before = dict(os.environ)
    env = build_server_env(locate_triton())
    assert dict(os.environ) == before
    assert env["LD_LIBRARY_PATH"].startswith(str(libpython_dir()))


def test_static_interpreter_is_a_clear_start_error() -> None:
    with pytest.raises(ServerStartError, match=r"Py_ENABLE_SHARED=0.*--enable-shared"):
        build_server_env(locate_triton(), base_env={}, config_vars={"Py_ENABLE_SHARED": 0})


def test_missing_libdir_is_a_clear_start_error(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match=r"LIBDIR=.*nope.*not a folder"):
        libpython_dir({"Py_ENABLE_SHARED": 1, "LIBDIR": str(tmp_path / "nope")})
