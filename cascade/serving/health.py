"""A readiness/liveness endpoint for Kubernetes beside one tritonserver (``cascade serve --health-port``).

Triton's own ``/v2/health/ready`` keeps answering 200 while a Python stub is dead and its model
fails every request (2.51; cascade/serving/stubs.py). This endpoint answers for the whole pod:

* ``GET /ready``: 200 when the tritonserver process runs, the stub watchdog knows of no model whose
  stub died and is not reloaded yet (it polls at once, so a stub death shows within one probe), and
  Triton reports the serving model ready (``/v2/models/<ready_model>/ready``, default ``recommend``:
  a bundle server is ready only after its first rollout); else 503. The body is JSON with the reason.
* ``GET /live``: 200 while the process runs and Triton answers ``/v2/health/live``; else 503.

It runs on a daemon thread (``http.server``); each probe costs one psutil scan of the server's
children and one loopback HTTP call.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOG = logging.getLogger(__name__)
READY_PATH = "/ready"
LIVE_PATH = "/live"
TRITON_TIMEOUT_S = 1.0


def _triton_ok(url: str, timeout_s: float = TRITON_TIMEOUT_S) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{url}: {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return False, f"{url}: {getattr(error, 'reason', error)}"


@dataclass
class HealthChecks:
    """What /ready and /live look at. ``watchdog`` is read at every probe (it starts later)."""

    triton_http_url: str  # http://127.0.0.1:8000
    process_running: Callable[[], bool]
    watchdog: Callable[[], Any] = lambda: None  # -> cascade.serving.stubs.StubWatchdog | None
    ready_model: str | None = "recommend"  # None: Triton's /v2/health/ready

    def ready(self) -> tuple[bool, str]:
        if not self.process_running():
            return False, "tritonserver is not running"
        watchdog = self.watchdog()
        if watchdog is not None:
            ok, reason = watchdog.health()
            if not ok:
                return False, reason
        path = f"/v2/models/{self.ready_model}/ready" if self.ready_model else "/v2/health/ready"
        ok, reason = _triton_ok(self.triton_http_url + path)
        return ok, reason if not ok else f"model {self.ready_model or '(all)'} ready"

    def live(self) -> tuple[bool, str]:
        if not self.process_running():
            return False, "tritonserver is not running"
        return _triton_ok(self.triton_http_url + "/v2/health/live")


class HealthEndpoint:
    """Serves HealthChecks on ``host:port`` until stop()."""

    def __init__(self, checks: HealthChecks, host: str, port: int) -> None:
        self.checks = checks
        routes = {READY_PATH: checks.ready, LIVE_PATH: checks.live}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                check = routes.get(self.path.split("?", 1)[0])
                if check is None:
                    code, body = 404, {"error": f"unknown path {self.path}; expected {READY_PATH} or {LIVE_PATH}"}
                else:
                    try:
                        ok, reason = check()
                    except Exception as exc:  # noqa: BLE001 - a probe answers, never crashes the thread
                        ok, reason = False, f"health check failed: {exc}"
                    code, body = (200 if ok else 503), {"ok": ok, "reason": reason}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - probes every second: no access log
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="cascade-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> "HealthEndpoint":
        self._thread.start()
        LOG.info("health endpoint on port %s (%s, %s)", self.port, READY_PATH, LIVE_PATH)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
