"""Progress bars draw on a terminal and stay quiet in a log file (cascade/progress.py), checked on a
real child process whose stderr is first a pipe (a log) and then a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from cascade.progress import PROGRESS_ENV, bars_disabled

SCRIPT = (
    "from cascade.progress import progress_bar\n"
    "for _ in progress_bar(range(50), desc='work', enabled=True, mininterval=0):\n"
    "    pass\n"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PROGRESS_ENV}
    env.update(extra)
    return env


def test_a_bar_writes_nothing_when_stderr_is_a_log_file() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "work" not in done.stderr and "\r" not in done.stderr


def test_a_bar_draws_on_a_terminal() -> None:
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stderr=child, stdout=subprocess.DEVNULL, env=_env())
        os.close(child)
        chunks = []
        while True:
            try:
                data = os.read(parent, 4096)
            except OSError:  # the pty closes when the child exits
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(parent)
    drawn = b"".join(chunks).decode(errors="replace")
    assert "work" in drawn and "50/50" in drawn


@pytest.mark.parametrize(("forced", "enabled", "expected"),
                         [("", True, None), ("", False, True), ("1", True, False), ("0", True, True), ("1", False, True)])
def test_the_environment_forces_bars(monkeypatch: pytest.MonkeyPatch, forced: str, enabled: bool,
                                     expected: bool | None) -> None:
    monkeypatch.setenv(PROGRESS_ENV, forced)
    assert bars_disabled(enabled) is expected


def test_a_forced_bar_draws_into_a_log() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=_env(**{PROGRESS_ENV: "1"}), timeout=60)
    assert "work" in done.stderr


LIBRARY = (  # a library that draws its own bar, as Feast's materialize does, and a warning beside it
    "import logging, sys\n"
    "from tqdm import tqdm\n"
    "from cascade.progress import library_bars_quiet\n"
    "logging.basicConfig(stream=sys.stderr)\n"
    "with library_bars_quiet():\n"
    "    bar = tqdm(total=50, ncols=100, desc='libwork', mininterval=0)\n"
    "    for _ in range(50):\n"
    "        bar.update(1)\n"
    "    bar.close()\n"
    "    logging.getLogger('x').warning('still logged')\n"
)


def test_a_library_bar_is_quiet_in_a_log_but_logging_is_not() -> None:
    done = subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "libwork" not in done.stderr and "still logged" in done.stderr
    forced = subprocess.run([sys.executable, "-c", LIBRARY], capture_output=True, text=True,
                            env=_env(**{PROGRESS_ENV: "1"}), timeout=60)
    assert "libwork" in forced.stderr
