"""Python-backend stub health: detect a dead stub and restart its model, or take the server down.

Triton 2.51's Python backend does not restart a stub that died (kill -9, OOM killer, segfault):
every request routed to that model instance fails with "Stub process is not healthy" while
``/v2/health/ready`` keeps answering 200 (that release has no per-instance readiness callback; the
restart branch in ``TRITONBACKEND_ModelInstanceExecute`` is a TODO). :class:`StubWatchdog` runs
beside the server (``cascade serve``, :class:`cascade.serving.server.TritonServer` with
``stub_watchdog=True``) and polls the server's child processes every ``interval_s``:

* a stub is identified by its command line (``triton_python_backend_stub <repo>/<model>/<version>/model.py
  <shm region> ... <instance name> ...``); a zombie counts as dead;
* a stub that vanished without a live stub of the same instance name taking over (a reload or a
  rollout starts the new one first) is dead; if its model version is still READY in the repository
  index, the watchdog acts:
  - ``policy="reload"`` (explicit model control): ``POST /v2/repository/models/<model>/load``, which
    builds fresh instances (new stubs, warm-up included) and swaps them in; requests fail only
    until the load finishes (seconds). Triton 2.51 treats a load of an unchanged model folder as
    a no-op (measured: "reloaded" in 0.0 s, the dead stub stays dead), so the watchdog first marks
    the folder modified (the mtime of the version's model.py), and after the load checks that the model
    has a live stub again; if not (a read-only repository, a failed load), it stops the server;
  - ``policy="exit"`` (modes none/poll, where the repository API cannot load): SIGTERM the server,
    so it is neither live nor ready and the supervisor (Kubernetes, ``cascade serve``) restarts it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

LOG = logging.getLogger(__name__)
STUB_NAME = "triton_python_backend_stub"
ADMIN_KEY_ENV = "CASCADE_TRITON_ADMIN_KEY"  # the admin-key header of a restricted repository API
Policy = Literal["reload", "exit"]


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str
    version: str
    instance: str
    model_dir: Path | None = None  # <repository>/<model>, from the stub's command line


def python_stubs(server_pid: int) -> list[Stub]:
    """The live (non-zombie) Python-backend stubs under ``server_pid``."""
    import psutil

    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    stubs = []
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            command = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if not command or Path(command[0]).name != STUB_NAME or len(command) < 2:
            continue
        model_file = Path(command[1])
        instance = command[8] if len(command) > 8 else model_file.parent.parent.name
        stubs.append(Stub(child.pid, model_file.parent.parent.name, model_file.parent.name, instance,
                          model_file.parent.parent))
    return stubs


def _request(url: str, admin_key: str | None, body: bytes = b"{}", timeout_s: float = 120.0) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    if admin_key:
        request.add_header("admin-key", admin_key)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read()


def ready_versions(http_url: str, admin_key: str | None = None) -> set[tuple[str, str]]:
    """(model, version) pairs the repository index reports READY."""
    entries = json.loads(_request(f"{http_url}/v2/repository/index", admin_key, b'{"ready": true}', 10.0) or b"[]")
    return {(e["name"], str(e.get("version", ""))) for e in entries if e.get("state") == "READY"}


@dataclass
class StubWatchdog:
    """Watches one tritonserver's stubs on a daemon thread (see the module docstring)."""

    server_pid: int
    http_url: str
    policy: Policy = "reload"
    interval_s: float = 0.5
    admin_key: str | None = field(default_factory=lambda: _admin_key_from_env())
    on_event: Callable[[str], None] | None = None  # also called with each log line (tests, benchmarks)
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._known: dict[int, Stub] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reloading: set[str] = set()
        self._down: dict[str, float] = {}  # model -> monotonic time its stub was found dead (until reloaded)
        self._lock = threading.Lock()  # check() runs on the loop thread and on readiness probes

    def start(self) -> "StubWatchdog":
        self._known = {s.pid: s for s in python_stubs(self.server_pid) if s.instance != s.model}
        self._thread = threading.Thread(target=self._loop, name="cascade-stub-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _event(self, message: str) -> None:
        LOG.warning("%s", message)
        self.events.append(f"{time.time():.3f} {message}")
        if self.on_event is not None:
            self.on_event(message)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive one bad poll
                LOG.warning("stub watchdog poll failed: %s", exc)

    def health(self) -> tuple[bool, str]:
        """Poll now; (False, reason) while a model whose stub died is not reloaded yet."""
        try:
            self.check()
        except Exception as exc:  # noqa: BLE001 - a failed poll says nothing about the stubs
            LOG.debug("stub watchdog poll failed: %s", exc)
        down = dict(self._down)
        if not down:
            return True, "all python stubs alive"
        now = time.monotonic()
        return False, "; ".join(f"model {m}: python stub died {now - t:.1f} s ago, reload in progress"
                                for m, t in sorted(down.items()))

    def dead_stubs(self) -> list[Stub]:
        """Stubs seen at the previous poll that are gone without a same-instance successor."""
        # a stub named after the model itself (not <model>_<group>_<index>) is the short-lived one the
        # backend starts to auto-complete the config at load: its exit is not a crash
        live = {s.pid: s for s in python_stubs(self.server_pid) if s.instance != s.model}
        live_instances = {(s.model, s.instance) for s in live.values()}
        dead = [s for pid, s in self._known.items() if pid not in live and (s.model, s.instance) not in live_instances]
        self._known = live
        return dead

    def check(self) -> list[Stub]:
        """One poll; acts on dead stubs whose model version is still READY. Returns them."""
        with self._lock:
            return self._check()

    def _check(self) -> list[Stub]:
        dead = self.dead_stubs()
        if not dead:
            return []
        try:
            ready = ready_versions(self.http_url, self.admin_key)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if _server_gone(self.server_pid):
                return []
            self._event(f"stub(s) {[s.instance for s in dead]} died; repository index unavailable ({exc})")
            ready = {(s.model, s.version) for s in dead}
        crashed = [s for s in dead if (s.model, s.version) in ready]
        for stub in crashed:
            self._event(f"python stub {stub.instance} (model {stub.model}, pid {stub.pid}) died")
        if not crashed:
            return []
        for stub in crashed:
            self._down.setdefault(stub.model, time.monotonic())
        if self.policy == "exit":
            self._event(f"stopping tritonserver pid {self.server_pid} (cannot reload in this model control mode)")
            try:
                os.kill(self.server_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            return crashed
        folders = {s.model: (s.model_dir, s.version) for s in crashed}
        for model in sorted(set(folders) - self._reloading):
            self._reloading.add(model)
            threading.Thread(target=self._reload, args=(model, *folders[model]), name=f"cascade-reload-{model}",
                             daemon=True).start()
        return crashed

    def _stop_server(self, why: str) -> None:
        self._event(f"{why}; stopping tritonserver pid {self.server_pid}")
        try:
            os.kill(self.server_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _reload(self, model: str, model_dir: Path | None = None, version: str = "1") -> None:
        start = time.monotonic()
        try:
            mark_modified(model_dir, version)
        except OSError as exc:
            self._event(f"cannot mark {model_dir} modified ({exc}); Triton may skip the reload")
        try:
            _request(f"{self.http_url}/v2/repository/models/{model}/load", self.admin_key)
        except (urllib.error.URLError, OSError) as exc:
            self._stop_server(f"reload of model {model} failed ({exc})")
            self._reloading.discard(model)
            return
        if not any(s.model == model and s.instance != s.model for s in python_stubs(self.server_pid)):
            self._stop_server(f"model {model} has no live python stub after its reload ({time.monotonic() - start:.1f} s)")
        else:
            self._down.pop(model, None)
            self._event(f"model {model} reloaded (fresh stubs) in {time.monotonic() - start:.1f} s")
        self._reloading.discard(model)


def mark_modified(model_dir: Path | None, version: str = "1") -> None:
    """Bump the mtime of the version's model.py, so that Triton's load API takes the model for
    modified and builds new instances instead of keeping the loaded ones (measured on 2.51: a
    touched config.pbtxt with the same content is not enough). Its bytecode is rewritten at once,
    so the stub does not write a newer one after the load (which would make the next ensemble load
    reload the model again, cascade/bundles/models.py)."""
    if model_dir is None:
        return
    import py_compile

    source = model_dir / version / "model.py"
    if not source.is_file():
        raise OSError(f"{source} not found")
    os.utime(source, None)
    try:
        py_compile.compile(str(source), doraise=True)
    except (py_compile.PyCompileError, OSError):
        pass  # the load reports a broken model.py; a read-only folder keeps its old bytecode


def _admin_key_from_env() -> str | None:
    from cascade.errors import CascadeError
    from cascade.serving.admin import admin_key_from_env

    try:
        return admin_key_from_env()
    except CascadeError:
        return os.environ.get(ADMIN_KEY_ENV) or None


def _server_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
