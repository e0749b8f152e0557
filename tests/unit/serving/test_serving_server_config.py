"""TritonServerConfig validation, the tritonserver command line and launcher bookkeeping
(no server is started here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cascade.errors import InvalidInputError, NotFoundError, ServerStartError
from cascade.serving.server import TritonServer, TritonServerConfig, build_command

BIN = Path("/opt/triton/bin/tritonserver")


def _cmd(tmp_path: Path, **fields: Any) -> list[str]:
    config = TritonServerConfig(model_repository=tmp_path, **fields)
    return build_command(config, BIN, Path("/b"), Path("/c"))


def test_default_command_line(tmp_path: Path) -> None:
    cmd = _cmd(tmp_path)
    assert cmd[0] == str(BIN)
    assert cmd[1:] == [
        f"--model-repository={tmp_path.resolve()}",
        "--backend-directory=/b",
        "--cache-directory=/c",
        "--http-address=127.0.0.1",
        "--http-port=8000",
        "--grpc-address=127.0.0.1",
        "--grpc-port=8001",
        "--metrics-address=127.0.0.1",
        "--metrics-port=8002",
        "--model-control-mode=none",
        "--log-verbose=0",
        "--exit-timeout-secs=10",
    ]


def test_explicit_mode_loads_and_extra_args_come_last(tmp_path: Path) -> None:
    cmd = _cmd(
        tmp_path,
        host="0.0.0.0",
        http_port=9000,
        model_control_mode="explicit",
        load_models=["*"],
        log_verbose=1,
        extra_args=["--cache-config=local,size=1048576", "--grpc-infer-allocation-pool-size=8"],
    )
    assert "--http-address=0.0.0.0" in cmd and "--http-port=9000" in cmd
    assert "--model-control-mode=explicit" in cmd and "--log-verbose=1" in cmd
    assert cmd[-3:] == [
        "--load-model=*",
        "--cache-config=local,size=1048576",
        "--grpc-infer-allocation-pool-size=8",
    ]


def test_poll_mode_passes_poll_interval(tmp_path: Path) -> None:
    cmd = _cmd(tmp_path, model_control_mode="poll", repository_poll_secs=2)
    assert "--repository-poll-secs=2" in cmd


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"model_control_mode": "auto"}, r"model_control_mode: expected one of none, poll, explicit"),
        ({"load_models": ["echo"]}, r"load_models .*needs model_control_mode 'explicit'"),
        ({"repository_poll_secs": 3}, r"repository_poll_secs needs model_control_mode 'poll'"),
        ({"http_port": 0}, r"http_port: expected an integer in 1\.\.65535, got 0"),
        ({"grpc_port": 70000}, r"grpc_port: expected an integer in 1\.\.65535"),
        ({"metrics_port": 8000}, r"must differ"),
        ({"log_verbose": -1}, r"log_verbose: expected an integer >= 0"),
        ({"extra_args": ["cache-config=local"]}, r"extra_args: expected tritonserver options"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, fields: dict[str, Any], pattern: str) -> None:
    with pytest.raises(InvalidInputError, match=pattern):
        TritonServerConfig(model_repository=tmp_path, **fields).validate()


def test_start_with_missing_repository_raises_not_found_without_launching(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_repo"
    server = TritonServer(TritonServerConfig(model_repository=missing, log_file=tmp_path / "t.log"))
    with pytest.raises(NotFoundError, match=f"model repository {missing} does not exist"):
        server.start()
    assert server.pid is None and server.poll() is None
    assert not (tmp_path / "t.log").exists()


def test_start_with_a_file_as_repository_raises_not_found(tmp_path: Path) -> None:
    file = tmp_path / "repo.txt"
    file.write_text("x")
    with pytest.raises(NotFoundError, match="is not a folder"):
        TritonServer(TritonServerConfig(model_repository=file)).start()


def test_urls_use_loopback_when_listening_on_all_interfaces(tmp_path: Path) -> None:
    server = TritonServer(
        TritonServerConfig(model_repository=tmp_path, host="0.0.0.0", http_port=1, grpc_port=2, metrics_port=3)
    )
    assert server.http_url == "http://127.0.0.1:1"
    assert server.http_address == "127.0.0.1:1"
    assert server.grpc_url == "127.0.0.1:2"
    assert server.metrics_url == "http://127.0.0.1:3/metrics"


def test_lifecycle_calls_before_start(tmp_path: Path) -> None:
    server = TritonServer(TritonServerConfig(model_repository=tmp_path))
    assert server.stop() is None
    assert server.log_tail() == ""
    with pytest.raises(ServerStartError, match="before start"):
        server.wait_until_ready(1)


def test_log_tail_returns_the_last_lines(tmp_path: Path) -> None:
    server = TritonServer(TritonServerConfig(model_repository=tmp_path))
    server.log_file = tmp_path / "server.log"
    server.log_file.write_text("".join(f"line {i}\n" for i in range(100)))
    assert server.log_tail(3) == "line 97\nline 98\nline 99"
    assert server.log_tail().splitlines()[0] == "line 60"
