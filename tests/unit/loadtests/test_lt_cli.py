"""``cascade loadtest`` argument checks (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.errors import InvalidInputError
from cascade.loadtest_cli import Protocol, locust_command, parse_run_time, require_loopback


@pytest.mark.parametrize("text,seconds", [("30", 30), ("30s", 30), ("2m", 120), ("1m30s", 90), ("1h", 3600)])
def test_parse_run_time(text: str, seconds: int) -> None:
    assert parse_run_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0s", "10x"])
def test_parse_run_time_rejects(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--run-time"):
        parse_run_time(text)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_pass(host: str) -> None:
    assert require_loopback(host) == host


@pytest.mark.parametrize("host", ["10.1.2.3", "0.0.0.0", "example.com", "192.168.0.1"])
def test_other_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidInputError, match="--host"):
        require_loopback(host)


def test_cli_refuses_remote_host_before_running() -> None:
    from cascade.cli import app

    result = CliRunner().invoke(app, ["loadtest", "--host", "10.0.0.5", "--data", "."])
    assert result.exit_code == 2
    assert "local server" in result.output


def test_locust_command_is_bounded_and_headless(tmp_path: Path) -> None:
    cmd = locust_command(host="127.0.0.1", grpc_port=8001, http_port=8000, users=20, spawn_rate=10,
                         run_time_s=30, protocol=Protocol.both, data="d", prefix=tmp_path / "p",
                         stop_timeout_s=5, extra=[])
    joined = " ".join(cmd)
    for part in ("--headless", "--run-time 30s", "--stop-timeout 5", f"--csv {tmp_path / 'p'}",
                 "--grpc-url 127.0.0.1:8001", "--host http://127.0.0.1:8000"):
        assert part in joined
    assert cmd[-2:] == ["GrpcRecommendUser", "HttpRecommendUser"]
