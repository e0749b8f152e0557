"""The admin key: tritonserver flags, client headers, validation, and that the key never shows in
the config's repr or the start-up log line (no server is started here; the real binary is in
tests/integration/test_restricted_api.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cascade.errors import InvalidInputError
from cascade.serving.admin import (
    ADMIN_APIS, ADMIN_KEY_ENV, admin_headers, admin_key_from_env, restricted_api_args,
)
from cascade.serving.server import TritonServerConfig, build_command

KEY = "k3y_Of-24.characters~ok"


def test_every_admin_class_api_is_restricted_on_both_protocols() -> None:
    assert set(ADMIN_APIS) == {"model-repository", "model-config", "shared-memory", "statistics", "trace", "logging"}
    http, grpc = restricted_api_args(KEY)
    value = f"{','.join(ADMIN_APIS)}:admin-key={KEY}"
    assert http == f"--http-restricted-api={value}" and grpc == f"--grpc-restricted-protocol={value}"


def test_build_command_adds_the_flags_only_with_a_key(tmp_path: Path) -> None:
    plain = build_command(TritonServerConfig(model_repository=tmp_path), Path("/t"), Path("/b"), Path("/c"))
    assert not any("restricted" in a for a in plain)
    cmd = build_command(TritonServerConfig(model_repository=tmp_path, admin_key=KEY, restricted_apis=("shared-memory",)),
                        Path("/t"), Path("/b"), Path("/c"))
    assert f"--http-restricted-api=shared-memory:admin-key={KEY}" in cmd
    assert f"--grpc-restricted-protocol=shared-memory:admin-key={KEY}" in cmd


def test_key_stays_out_of_repr(tmp_path: Path) -> None:
    assert KEY not in repr(TritonServerConfig(model_repository=tmp_path, admin_key=KEY))


@pytest.mark.parametrize("key", ["short", "has space in it.....", "colon:is:not:allowed:", "a=b" * 8, ""])
def test_bad_keys_name_the_field_and_form(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidInputError, match=r"admin_key: expected 16-256 URL-safe characters"):
        TritonServerConfig(model_repository=tmp_path, admin_key=key).validate()


def test_unknown_api_and_duplicate_flag_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="restricted_apis: expected a non-empty list of"):
        TritonServerConfig(model_repository=tmp_path, admin_key=KEY, restricted_apis=("repository",)).validate()
    with pytest.raises(InvalidInputError, match="--http-restricted-api is set from admin_key"):
        TritonServerConfig(model_repository=tmp_path, extra_args=["--http-restricted-api=trace:a=b"]).validate()


def test_admin_headers_from_argument_or_env() -> None:
    assert admin_headers("http", KEY) == {"admin-key": KEY}
    assert admin_headers("grpc", KEY) == {"triton-grpc-protocol-admin-key": KEY}
    assert admin_headers("http", env={ADMIN_KEY_ENV: KEY}) == {"admin-key": KEY}
    assert admin_headers("grpc", env={}) == {} and admin_key_from_env({ADMIN_KEY_ENV: "  "}) is None
    with pytest.raises(InvalidInputError, match=ADMIN_KEY_ENV):
        admin_headers("http", env={ADMIN_KEY_ENV: "bad key"})
    with pytest.raises(InvalidInputError, match="protocol: expected one of http, grpc"):
        admin_headers("https", KEY)


def test_start_log_line_redacts_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """start() logs its command line; the key must not be in it (the binary may be absent here,
    the log line comes first)."""
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer

    http, grpc, metrics = free_ports(3)
    server = TritonServer(TritonServerConfig(model_repository=tmp_path, admin_key=KEY, log_file=tmp_path / "t.log",
                                             http_port=http, grpc_port=grpc, metrics_port=metrics))
    with caplog.at_level(logging.INFO, logger="cascade.serving.server"):
        try:
            server.start()
        except Exception:  # noqa: BLE001 - only the log line matters here
            pass
        finally:
            server.stop()
    started = [r.getMessage() for r in caplog.records if "starting tritonserver" in r.getMessage()]
    assert started and KEY not in started[0] and "admin-key=***" in started[0]
