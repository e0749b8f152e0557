"""Stub-death detection of the watchdog on real child processes that carry a Python-backend stub's
command line (the interpreter, linked as triton_python_backend_stub, running a sleeping model.py;
the real stubs are killed in tests/integration/test_faults.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascade.serving.stubs import StubWatchdog, python_stubs


@pytest.fixture
def fake_stub(tmp_path: Path):
    binary = tmp_path / "triton_python_backend_stub"
    binary.symlink_to(sys.executable)
    started: list[subprocess.Popen] = []

    def start(model: str, instance: str) -> subprocess.Popen:
        script = tmp_path / model / "1" / "model.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("import time\ntime.sleep(30)\n")
        # argv as the python backend builds it: model.py, shm region, sizes, parent pid, lib, ipc handle, instance
        proc = subprocess.Popen([str(binary), str(script), "shm", "1", "2", "3", "lib", "h", instance, "dir"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def _wait_for(predicate, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def test_stubs_are_found_by_model_version_and_instance(fake_stub) -> None:
    import os

    proc = fake_stub("ranking", "ranking_0_0")
    stubs = _wait_for(lambda: [s for s in python_stubs(os.getpid()) if s.pid == proc.pid])
    assert [(s.model, s.version, s.instance) for s in stubs] == [("ranking", "1", "ranking_0_0")]


def test_a_killed_stub_is_dead_and_a_replaced_one_is_not(fake_stub) -> None:
    import os

    # Model names no real server uses: a session tritonserver started by an integration test in the
    # same pytest run is also our child, and its real "ranking_0_0" stub would count as a successor.
    ranking = fake_stub("fake_ranking", "fake_ranking_0_0")
    transform = fake_stub("fake_transform", "fake_transform_0_0")
    _wait_for(lambda: len([s for s in python_stubs(os.getpid()) if s.model.startswith("fake_")]) >= 2)
    watchdog = StubWatchdog(os.getpid(), "http://127.0.0.1:1")
    watchdog._known = {s.pid: s for s in python_stubs(os.getpid())}
    ranking.kill()  # stays a zombie until reaped: counts as dead
    dead = _wait_for(watchdog.dead_stubs)
    assert [s.instance for s in dead] == ["fake_ranking_0_0"]
    # a reload starts the new stub before the old one exits: not a death
    fake_stub("fake_transform", "fake_transform_0_0")
    _wait_for(lambda: len([s for s in python_stubs(os.getpid()) if s.model == "fake_transform"]) == 2)
    watchdog.dead_stubs()
    transform.kill()
    time.sleep(0.1)
    assert watchdog.dead_stubs() == []
