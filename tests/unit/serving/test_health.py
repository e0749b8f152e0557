"""The readiness endpoint of `cascade serve --health-port` (cascade/serving/health.py) on real
processes and sockets: a real ``http.server`` serving a folder stands for Triton's health paths
(``v2/models/recommend/ready`` exists as a file = 200, missing = 404), a real child process carrying
a Python-backend stub's command line stands for a stub. The real tritonserver case (a killed ranking
stub flips /ready to 503 and back) is tests/integration/test_faults.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cascade.errors import InvalidInputError
from cascade.serving.health import HealthChecks, HealthEndpoint
from cascade.serving.server import TritonServerConfig
from cascade.serving.stubs import StubWatchdog, python_stubs


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def triton_paths(tmp_path: Path):
    """A folder served over HTTP: create v2/... files to make those paths answer 200."""
    root = tmp_path / "www"
    (root / "v2" / "health").mkdir(parents=True)
    (root / "v2" / "health" / "live").write_text("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_ready_follows_the_serving_model_and_the_process(triton_paths) -> None:
    root, url = triton_paths
    running = {"yes": True}
    endpoint = HealthEndpoint(HealthChecks(url, process_running=lambda: running["yes"]), "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{endpoint.port}"
    try:
        code, body = _get(base + "/ready")
        assert code == 503 and "/v2/models/recommend/ready: 404" in body["reason"]  # first rollout not done
        (root / "v2" / "models" / "recommend").mkdir(parents=True)
        (root / "v2" / "models" / "recommend" / "ready").write_text("")
        assert _get(base + "/ready") == (200, {"ok": True, "reason": "model recommend ready"})
        assert _get(base + "/live")[0] == 200
        running["yes"] = False
        assert _get(base + "/ready") == (503, {"ok": False, "reason": "tritonserver is not running"})
        assert _get(base + "/live")[0] == 503
        assert _get(base + "/metrics")[0] == 404
    finally:
        endpoint.stop()


def test_a_dead_stub_makes_the_pod_unready_at_the_next_probe(triton_paths, tmp_path: Path) -> None:
    root, url = triton_paths
    (root / "v2" / "models" / "fake_rank").mkdir(parents=True)
    (root / "v2" / "models" / "fake_rank" / "ready").write_text("")
    # A "server" process whose child carries a stub's argv (model fake_rank, instance fake_rank_0_0).
    binary = tmp_path / "triton_python_backend_stub"
    binary.symlink_to(sys.executable)
    script = tmp_path / "fake_rank" / "1" / "model.py"
    script.parent.mkdir(parents=True)
    script.write_text("import time\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([{str(binary)!r}, {str(script)!r}, 'shm', '1', '2', '3', 'lib', 'h', 'fake_rank_0_0', 'd'])\n"
        "print(p.pid, flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        stub_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 5
        while not any(s.pid == stub_pid for s in python_stubs(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        # policy exit: a dead stub whose state cannot be read (this HTTP server has no repository
        # API) is taken as crashed, and the server is stopped; the watchdog's thread is not started,
        # so only the probe polls.
        watchdog = StubWatchdog(parent.pid, url, policy="exit")
        watchdog._known = {s.pid: s for s in python_stubs(parent.pid)}
        checks = HealthChecks(url, process_running=lambda: parent.poll() is None,
                              watchdog=lambda: watchdog, ready_model="fake_rank")
        assert checks.ready() == (True, "model fake_rank ready")
        subprocess.run(["kill", "-9", str(stub_pid)], check=True)
        ok, reason = checks.ready()
        while ok and time.monotonic() < deadline + 5:  # the kill lands asynchronously
            ok, reason = checks.ready()
        assert not ok and "model fake_rank: python stub died" in reason
        assert parent.wait(timeout=10) == -15  # SIGTERM from the watchdog (exit policy)
        assert checks.ready() == (False, "tritonserver is not running")
    finally:
        parent.kill()
        parent.wait()


def test_health_port_must_differ_from_the_server_ports(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="health_port"):
        TritonServerConfig(model_repository=tmp_path, health_port=8002).validate()
    TritonServerConfig(model_repository=tmp_path, health_port=8003).validate()
