"""Locating the bundled tritonserver files and assembling the backend folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cascade.errors import NotFoundError
from cascade.serving.locate import (
    PYTHON_BACKEND_FILES,
    STUB_NAME,
    locate_triton,
    prepare_backend_dir,
    pytriton_package_dir,
)

PY = (sys.version_info.major, sys.version_info.minor)


def test_locate_finds_bundled_binary_stub_and_libs() -> None:
    install = locate_triton()
    assert install.binary.name == "tritonserver" and os.access(install.binary, os.X_OK)
    assert install.stub.is_file()
    assert install.stub.parent.name == f"{PY[0]}.{PY[1]}"
    assert install.python_version == PY
    assert (install.python_backend / "libtriton_python.so").is_file()
    assert (install.caches / "local" / "libtritoncache_local.so").is_file()
    assert install.libs.name == "nvidia_pytriton.libs"
    assert any(p.name.startswith("libtritonserver") for p in install.libs.iterdir())


def test_locate_picks_the_stub_for_the_requested_python() -> None:
    install = locate_triton(python_version=(3, 10))
    assert install.stub.parent.name == "3.10"


def test_locate_unknown_python_version_names_it_and_lists_available() -> None:
    with pytest.raises(NotFoundError, match=r"Python 3\.99.*3\.11"):
        locate_triton(python_version=(3, 99))


def test_locate_missing_package_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=str(tmp_path / "tritonserver")):
        locate_triton(package_dir=tmp_path)


def test_locate_missing_binary_names_it(tmp_path: Path) -> None:
    real = pytriton_package_dir() / "tritonserver"
    fake = tmp_path / "pytriton"
    (fake / "tritonserver" / "python_backend_stubs" / "3.11").mkdir(parents=True)
    (fake / "tritonserver" / "python_backend_stubs" / "3.11" / STUB_NAME).write_bytes(b"")
    (fake / "tritonserver" / "backends").mkdir()
    (fake / "tritonserver" / "backends" / "python").symlink_to(real / "backends" / "python")
    with pytest.raises(NotFoundError, match=r"tritonserver binary not found at .*bin/tritonserver"):
        locate_triton(package_dir=fake, python_version=(3, 11))


def test_prepare_backend_dir_copies_the_three_files(tmp_path: Path) -> None:
    install = locate_triton()
    root = prepare_backend_dir(install, tmp_path / "backends")
    target = root / "python"
    assert sorted(p.name for p in target.iterdir()) == sorted([*PYTHON_BACKEND_FILES, STUB_NAME])
    stub = target / STUB_NAME
    assert os.access(stub, os.X_OK)
    assert stub.stat().st_size == install.stub.stat().st_size


def test_prepare_backend_dir_is_idempotent_and_repairs_changed_files(tmp_path: Path) -> None:
    install = locate_triton()
    target = prepare_backend_dir(install, tmp_path) / "python"
    inodes = {p.name: p.stat().st_ino for p in target.iterdir()}
    prepare_backend_dir(install, tmp_path)
    assert {p.name: p.stat().st_ino for p in target.iterdir()} == inodes  # nothing re-copied

    (target / "triton_python_backend_utils.py").write_text("broken")
    prepare_backend_dir(install, tmp_path)
    restored = (target / "triton_python_backend_utils.py").read_bytes()
    assert restored == (install.python_backend / "triton_python_backend_utils.py").read_bytes()
    assert not [p for p in target.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_system_triton_is_used_as_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CASCADE_TRITONSERVER_HOME (the serving image: /opt/tritonserver, NGC layout): its backends/
    folder is the --backend-directory as is, no bundled libs; a missing file is named."""
    from cascade.serving.env import build_server_env
    from cascade.serving.locate import TRITON_HOME_ENV

    home = tmp_path / "tritonserver"
    monkeypatch.setenv(TRITON_HOME_ENV, str(home))
    with pytest.raises(NotFoundError, match=r"bin/tritonserver not found.*/opt/tritonserver"):
        locate_triton()
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "tritonserver").write_text("")
    (home / "backends" / "python").mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (home / "backends" / "python" / name).write_text("")
    with pytest.raises(NotFoundError, match="triton_python_backend_stub not found"):
        locate_triton()
    (home / "backends" / "python" / "triton_python_backend_stub").write_text("")
    install = locate_triton()
    assert install.system and install.backends == home / "backends" and install.libs is None
    assert install.binary == home / "bin" / "tritonserver" and install.caches == home / "caches"
    env = build_server_env(install, base_env={"LD_LIBRARY_PATH": "/usr/local/cuda/compat/lib", "PATH": "/usr/bin"})
    assert env["LD_LIBRARY_PATH"] == "/usr/local/cuda/compat/lib", "the image's library path is left alone"
    assert env["PATH"].startswith(str(Path(sys.prefix) / "bin"))
