"""The bundled tritonserver, started for real: inference over gRPC and HTTP, metrics, explicit
model control, start failures, and ``cascade serve`` as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cascade.errors import NotFoundError, ServerStartError
from cascade.serving.ports import free_ports
from cascade.serving.server import TritonServer, TritonServerConfig
from cascade.serving.testing import TritonServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ECHO_REPOSITORY = Path(__file__).resolve().parents[1] / "fixtures" / "echo_repository"
VALUES = np.array([3, -1, 0, 2**40], dtype=np.int64)


def _grpc_infer(url: str, values: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        tensor = grpcclient.InferInput("INPUT0", list(values.shape), "INT64")
        tensor.set_data_from_numpy(values)
        return client.infer("echo", [tensor]).as_numpy("OUTPUT0")


def test_grpc_inference_doubles_the_input(echo_server: TritonServer) -> None:
    out = _grpc_infer(echo_server.grpc_url, VALUES)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, VALUES * 2)


def test_http_inference_doubles_the_input(echo_server: TritonServer) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(echo_server.http_address)
    try:
        assert client.is_server_ready() and client.is_model_ready("echo")
        tensor = httpclient.InferInput("INPUT0", list(VALUES.shape), "INT64")
        tensor.set_data_from_numpy(VALUES, binary_data=False)
        out = client.infer("echo", [tensor]).as_numpy("OUTPUT0")
    finally:
        client.close()
    np.testing.assert_array_equal(out, VALUES * 2)


def test_bad_input_is_invalid_argument_naming_the_input(echo_server: TritonServer) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as info:
        _grpc_infer(echo_server.grpc_url, np.array([1, 2**62], dtype=np.int64))
    assert str(info.value.status()) == "StatusCode.INVALID_ARGUMENT"
    assert "INPUT0[1]" in info.value.message()


def test_metrics_count_successful_requests(echo_server: TritonServer) -> None:
    _grpc_infer(echo_server.grpc_url, VALUES)
    with urllib.request.urlopen(echo_server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    lines = [l for l in text.splitlines() if l.startswith("nv_inference_request_success{")]
    assert any('model="echo"' in l and float(l.rsplit(" ", 1)[1]) >= 1 for l in lines), lines


def _model_state(client: object, name: str) -> str:
    index = client.get_model_repository_index().models  # type: ignore[attr-defined]
    return {m.name: m.state for m in index}[name]


def test_explicit_mode_loads_and_unloads_over_grpc(triton_factory: TritonServerFactory) -> None:
    import tritonclient.grpc as grpcclient

    server = triton_factory(ECHO_REPOSITORY, model_control_mode="explicit")
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_ready()
        assert not client.is_model_ready("echo")  # explicit mode, nothing named at start
        client.load_model("echo")
        assert client.is_model_ready("echo")
        np.testing.assert_array_equal(_grpc_infer(server.grpc_url, VALUES), VALUES * 2)
        client.unload_model("echo")
        assert not client.is_model_ready("echo")
        deadline = time.monotonic() + 10  # unloading finishes in the background
        while (state := _model_state(client, "echo")) == "UNLOADING" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state == "UNAVAILABLE"


def test_factory_caches_per_repository_and_options_and_close_stops_all(tmp_path: Path) -> None:
    with TritonServerFactory(log_dir=tmp_path) as factory:
        server = factory(ECHO_REPOSITORY, log_verbose=1, exit_timeout_s=2)
        same = factory(ECHO_REPOSITORY / ".." / "echo_repository", exit_timeout_s=2, log_verbose=1)
        assert same is server and factory.servers == [server]
        assert server.is_ready() and server.log_file is not None and server.log_file.parent == tmp_path
    assert server.poll() is not None and factory.servers == []
    assert not server.is_ready()


def test_missing_repository_is_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "missing_repo"
    with pytest.raises(NotFoundError, match=str(missing)):
        with TritonServer(TritonServerConfig(model_repository=missing)):
            pass


def test_broken_model_is_a_start_error_with_the_log_tail(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nthis is not pbtxt\n')
    http, grpc, metrics = free_ports(3)
    config = TritonServerConfig(
        model_repository=repo, http_port=http, grpc_port=grpc, metrics_port=metrics,
        log_file=tmp_path / "server.log", ready_timeout_s=60,
    )
    server = TritonServer(config)
    with pytest.raises(ServerStartError, match=r"exited with code \d+ before it was ready") as info:
        with server:
            pass
    assert "broken" in info.value.message  # the log tail names the model that failed
    assert server.poll() is not None


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not printed by `cascade serve` (rc={proc.poll()}):\n{content}")


def _start_cli(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], Path, Path, list[int]]:
    ports = free_ports(3)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    cmd = [
        sys.executable, "-m", "cascade.cli", "serve", str(ECHO_REPOSITORY),
        "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
        "--log-file", str(tmp_path / "server.log"), "--extra-arg=--exit-timeout-secs=5", *options,
    ]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    return proc, out, err, ports


def _cleanup(proc: subprocess.Popen[bytes], server_pid: int | None) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if server_pid is not None and Path(f"/proc/{server_pid}").exists():
        os.kill(server_pid, signal.SIGKILL)


def _server_pid(text: str) -> int:
    return int(text.split("(pid ", 1)[1].split(")", 1)[0])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cascade_serve_becomes_ready_and_exits_zero_on_signal(tmp_path: Path, signum: int) -> None:
    proc, out, err, (http, grpc, metrics) = _start_cli(tmp_path)
    server_pid: int | None = None
    try:
        text = _wait_for(out, "Press Ctrl-C to stop.", proc, timeout_s=90)
        server_pid = _server_pid(text)
        assert f"127.0.0.1:{grpc}" in text and f"http://127.0.0.1:{metrics}/metrics" in text
        np.testing.assert_array_equal(_grpc_infer(f"127.0.0.1:{grpc}", VALUES), VALUES * 2)

        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0, err.read_text()
        assert "stopping tritonserver" in err.read_text()
        assert not Path(f"/proc/{server_pid}").exists(), "tritonserver outlived `cascade serve`"
    finally:
        _cleanup(proc, server_pid)


def test_cascade_serve_exits_non_zero_with_log_tail_when_the_server_dies(tmp_path: Path) -> None:
    proc, out, err, (_, grpc, _) = _start_cli(tmp_path, "--model-control-mode", "explicit")
    server_pid: int | None = None
    try:
        server_pid = _server_pid(_wait_for(out, "Press Ctrl-C to stop.", proc, timeout_s=90))
        # explicit mode without --load-model loads every model
        np.testing.assert_array_equal(_grpc_infer(f"127.0.0.1:{grpc}", VALUES), VALUES * 2)

        os.kill(server_pid, signal.SIGKILL)  # the tritonserver this test's `cascade serve` started
        assert proc.wait(timeout=30) == 1
        message = err.read_text()
        assert f"tritonserver (pid {server_pid}) exited with code -9" in message
        assert "Started Metrics Service" in message  # the log tail
    finally:
        _cleanup(proc, server_pid)
