"""Start, watch and stop one tritonserver process (the binary bundled in ``nvidia-pytriton``).

    config = TritonServerConfig(model_repository=Path("build/model_repository"))
    with TritonServer(config) as server:      # start() + wait_until_ready()
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
        ...
    # stop(): SIGTERM to the pid we started, SIGKILL to its process group after a timeout

The server runs in its own session (process group = its pid), so a terminal's Ctrl-C reaches the
Python parent, which stops the server in order; on Linux it also gets SIGTERM if the parent dies.
stdout and stderr go to a log file whose tail is attached to every start failure.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from cascade.errors import InvalidInputError, NotFoundError, ServerStartError
from cascade.paths import build_dir
from cascade.serving.admin import ADMIN_APIS, redact, restricted_api_args, validate_admin_key, validate_apis

logger = logging.getLogger(__name__)

ModelControlMode = Literal["none", "poll", "explicit"]
MODEL_CONTROL_MODES: tuple[str, ...] = ("none", "poll", "explicit")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
LOG_TAIL_LINES = 40


@dataclass
class TritonServerConfig:
    """How to launch tritonserver. Ports default to Triton's 8000/8001/8002."""

    model_repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"  # --http/--grpc/--metrics-address; "0.0.0.0" to listen on all
    model_control_mode: ModelControlMode = "none"
    load_models: list[str] = field(default_factory=list)  # explicit mode only; "*" = all
    repository_poll_secs: int | None = None  # poll mode only
    log_verbose: int = 0
    log_file: Path | None = None  # default: build_dir()/logs/tritonserver-<time>-<port>.log
    extra_args: list[str] = field(default_factory=list)  # e.g. "--cache-config=local,size=1048576"
    exit_timeout_s: int = 10  # --exit-timeout-secs: how long Triton drains in-flight requests
    ready_timeout_s: float = 120.0  # used by the context manager
    backend_root: Path | None = None  # default: build_dir()/triton/backends-py<X.Y>
    kill_on_parent_exit: bool = True  # Linux PR_SET_PDEATHSIG(SIGTERM) on the server
    # Restart a model whose Python stub died (explicit mode) or stop the server (other modes), so it
    # is never "ready" while a stage fails every request (cascade/serving/stubs.py).
    stub_watchdog: bool = False
    # A readiness/liveness endpoint for Kubernetes (cascade/serving/health.py): GET /ready is 200 only
    # while `ready_model` is ready and no stub is dead; None: none. Listens on `host`.
    health_port: int | None = None
    ready_model: str | None = "recommend"  # None: Triton's /v2/health/ready
    # Admin-class APIs (cascade.serving.admin.ADMIN_APIS) need the header `admin-key: <key>`
    # when set; clients send cascade.serving.admin.admin_headers(). Never shown in repr or logs.
    admin_key: str | None = field(default=None, repr=False)
    restricted_apis: tuple[str, ...] = ADMIN_APIS
    # Extra environment of tritonserver and its stubs, over the caller's (e.g. the
    # CASCADE_<MODEL>_<PARAM> overrides cascade.online.triton.StageContext.parameter reads).
    env: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise InvalidInputError naming the first bad field."""
        if self.model_control_mode not in MODEL_CONTROL_MODES:
            raise InvalidInputError(
                f"model_control_mode: expected one of {', '.join(MODEL_CONTROL_MODES)}, "
                f"got {self.model_control_mode!r}"
            )
        if self.load_models and self.model_control_mode != "explicit":
            raise InvalidInputError(
                f"load_models {self.load_models} needs model_control_mode 'explicit', "
                f"got {self.model_control_mode!r}"
            )
        if self.repository_poll_secs is not None and self.model_control_mode != "poll":
            raise InvalidInputError("repository_poll_secs needs model_control_mode 'poll'")
        ports = {"http_port": self.http_port, "grpc_port": self.grpc_port,
                 "metrics_port": self.metrics_port}
        if self.health_port is not None:
            ports["health_port"] = self.health_port
        for name, port in ports.items():
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidInputError(f"{name}: expected an integer in 1..65535, got {port!r}")
        if len(set(ports.values())) != len(ports):
            raise InvalidInputError(f"{', '.join(ports)} must differ, got {ports}")
        if self.log_verbose < 0:
            raise InvalidInputError(f"log_verbose: expected an integer >= 0, got {self.log_verbose}")
        for arg in self.extra_args:
            if not arg.startswith("--"):
                raise InvalidInputError(
                    f"extra_args: expected tritonserver options like '--name=value', got {arg!r}"
                )
            if arg.startswith(("--http-restricted-api", "--grpc-restricted-protocol")):
                raise InvalidInputError(
                    f"extra_args: {arg.split('=', 1)[0]} is set from admin_key/restricted_apis; "
                    "pass those fields instead"
                )
        validate_apis(self.restricted_apis)
        if self.admin_key is not None:
            validate_admin_key(self.admin_key)


def build_command(
    config: TritonServerConfig, binary: Path, backend_root: Path, cache_dir: Path
) -> list[str]:
    """The tritonserver argv for ``config`` (validated first)."""
    config.validate()
    cmd = [
        str(binary),
        f"--model-repository={Path(config.model_repository).resolve()}",
        f"--backend-directory={backend_root}",
        f"--cache-directory={cache_dir}",
        f"--http-address={config.host}",
        f"--http-port={config.http_port}",
        f"--grpc-address={config.host}",
        f"--grpc-port={config.grpc_port}",
        f"--metrics-address={config.host}",
        f"--metrics-port={config.metrics_port}",
        f"--model-control-mode={config.model_control_mode}",
        f"--log-verbose={config.log_verbose}",
        f"--exit-timeout-secs={config.exit_timeout_s}",
    ]
    if config.repository_poll_secs is not None:
        cmd.append(f"--repository-poll-secs={config.repository_poll_secs}")
    cmd += [f"--load-model={name}" for name in config.load_models]
    if config.admin_key is not None:
        cmd += restricted_api_args(config.admin_key, config.restricted_apis)
    cmd += list(config.extra_args)
    return cmd


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


class TritonServer:
    """One tritonserver process; use as a context manager or call start/wait_until_ready/stop."""

    def __init__(self, config: TritonServerConfig) -> None:
        self.config = config
        self.log_file: Path | None = None
        self.ready_seconds: float | None = None  # start() to first ready answer
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._started_at: float | None = None
        self.watchdog = None  # cascade.serving.stubs.StubWatchdog once ready (config.stub_watchdog)
        self.health = None  # cascade.serving.health.HealthEndpoint (config.health_port)

    # ----------------------------------------------------------------- addresses
    @property
    def client_host(self) -> str:
        """Where local clients connect (loopback when the server listens on all interfaces)."""
        return "127.0.0.1" if self.config.host in WILDCARD_HOSTS else self.config.host

    @property
    def http_url(self) -> str:
        """``http://host:port`` (tritonclient.http wants ``host:port``: use ``http_address``)."""
        return f"http://{self.client_host}:{self.config.http_port}"

    @property
    def http_address(self) -> str:
        return f"{self.client_host}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` as ``tritonclient.grpc.InferenceServerClient(url=...)`` expects."""
        return f"{self.client_host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.client_host}:{self.config.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Launch tritonserver (does not wait for readiness)."""
        from cascade.serving.env import build_server_env
        from cascade.serving.locate import locate_triton, prepare_backend_dir

        if self._process is not None and self._process.poll() is None:
            raise ServerStartError(f"tritonserver already running with pid {self._process.pid}")
        self.config.validate()
        repo = Path(self.config.model_repository)
        if not repo.is_dir():
            raise NotFoundError(
                f"model repository {repo} does not exist or is not a folder; expected a folder "
                "with one sub-folder per model (config.pbtxt + <version>/)"
            )
        install = locate_triton()
        version = f"{install.python_version[0]}.{install.python_version[1]}"
        if install.backends is not None:  # a system installation (the serving image): as installed
            backend_root = Path(self.config.backend_root or install.backends)
        else:
            backend_root = prepare_backend_dir(
                install, self.config.backend_root or build_dir() / "triton" / f"backends-py{version}"
            )
        env = {**build_server_env(install), **self.config.env}
        cmd = build_command(self.config, install.binary, backend_root, install.caches)
        self.log_file = Path(self.config.log_file or self._default_log_file())
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = self.log_file.open("wb")
        logger.info("starting tritonserver: %s (log: %s)", " ".join(redact(cmd, self.config.admin_key)),
                    self.log_file)
        self._started_at = time.monotonic()
        self.ready_seconds = None
        try:
            self._process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_parent_death_signal() if self.config.kill_on_parent_exit else None,
            )
        except OSError as exc:
            self._close_log()
            raise ServerStartError(f"cannot execute {install.binary}: {exc}") from exc
        if self.config.health_port is not None and self.health is None:
            self._start_health()

    def _start_health(self) -> None:
        from cascade.serving.health import HealthChecks, HealthEndpoint

        checks = HealthChecks(self.http_url, process_running=lambda: self.poll() is None,
                              watchdog=lambda: self.watchdog, ready_model=self.config.ready_model)
        try:
            self.health = HealthEndpoint(checks, self.config.host, int(self.config.health_port or 0)).start()
        except OSError as exc:
            self.stop()
            raise ServerStartError(f"health endpoint: cannot listen on {self.config.host}:"
                                   f"{self.config.health_port}: {exc}") from exc

    @property
    def health_url(self) -> str | None:
        """``http://host:port`` of the readiness endpoint (GET /ready, /live), None without one."""
        return f"http://{self.client_host}:{self.health.port}" if self.health is not None else None

    def _default_log_file(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return build_dir() / "logs" / f"tritonserver-{stamp}-{self.config.http_port}-{os.getpid()}.log"

    def poll(self) -> int | None:
        """The exit code if the server has exited, else None (also None before start())."""
        return self._process.poll() if self._process is not None else None

    def is_ready(self, timeout_s: float = 1.0) -> bool:
        """True when ``GET /v2/health/ready`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=timeout_s) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_ready(self, timeout_s: float = 120.0, interval_s: float = 0.1) -> float:
        """Poll readiness until ready; return seconds since start().

        Fails fast when the process exits; on failure or timeout the server is stopped and
        ServerStartError carries the last lines of its log.
        """
        if self._process is None or self._started_at is None:
            raise ServerStartError("wait_until_ready() called before start()")
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                self._close_log()
                raise ServerStartError(
                    f"tritonserver (pid {self._process.pid}, repository "
                    f"{self.config.model_repository}) exited with code {code} before it was "
                    f"ready; log {self.log_file}, last lines:\n{self.log_tail()}"
                )
            if self.is_ready(timeout_s=min(1.0, max(0.1, deadline - time.monotonic()))):
                self.ready_seconds = time.monotonic() - self._started_at
                logger.info("tritonserver pid %s ready in %.2f s", self.pid, self.ready_seconds)
                if self.config.stub_watchdog and self.watchdog is None:
                    from cascade.serving.stubs import StubWatchdog

                    policy = "reload" if self.config.model_control_mode == "explicit" else "exit"
                    self.watchdog = StubWatchdog(self._process.pid, self.http_url, policy=policy)
                    key = getattr(self.config, "admin_key", None)  # a restricted repository API (r3-image)
                    if key:
                        self.watchdog.admin_key = key
                    self.watchdog.start()
                return self.ready_seconds
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(
                    f"tritonserver (repository {self.config.model_repository}) was not ready "
                    f"at {self.http_url}/v2/health/ready within {timeout_s:.0f} s; log "
                    f"{self.log_file}, last lines:\n{self.log_tail()}"
                )
            time.sleep(interval_s)

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM the server, wait ``timeout_s`` (default exit_timeout_s + 5), then SIGKILL its
        process group. Returns the exit code (None if it was never started). Idempotent."""
        proc = self._process
        if proc is None:
            return None
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        if self.health is not None:
            self.health.stop()
            self.health = None
        if proc.poll() is None:
            wait_s = timeout_s if timeout_s is not None else self.config.exit_timeout_s + 5.0
            logger.info("stopping tritonserver pid %s", proc.pid)
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver pid %s ignored SIGTERM for %.0f s; killing", proc.pid, wait_s)
                try:  # leader not reaped yet, so its group id is still ours
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def log_tail(self, n_lines: int = LOG_TAIL_LINES) -> str:
        """The last ``n_lines`` lines of the server log ('' before start())."""
        if self.log_file is None or not self.log_file.is_file():
            return ""
        with self.log_file.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read()
        lines = data.decode("utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n_lines:])

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_until_ready(self.config.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"TritonServer(pid={self.pid}, http={self.http_url}, grpc={self.grpc_url}, "
                f"repository={self.config.model_repository})")
