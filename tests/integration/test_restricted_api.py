"""The admin-class APIs behind the admin key, on the real bundled tritonserver (2.51): without
the `admin-key` header shared-memory registration, the model repository API, model config and
statistics are refused over HTTP and gRPC; with it they work; health, metadata and inference
stay open to anyone. (The CVE-2025-23319/23320/23334 chain goes through the shared-memory API.)"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cascade.serving.admin import admin_headers
from cascade.serving.server import TritonServer
from cascade.serving.testing import TritonServerFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ECHO_REPOSITORY = Path(__file__).resolve().parents[1] / "fixtures" / "echo_repository"
KEY = secrets.token_urlsafe(32)
REGION_BYTES = 64
HTTP = admin_headers("http", KEY)   # {"admin-key": KEY}
GRPC = admin_headers("grpc", KEY)   # {"triton-grpc-protocol-admin-key": KEY}


@pytest.fixture(scope="module")
def locked(triton_factory: TritonServerFactory) -> TritonServer:
    return triton_factory(ECHO_REPOSITORY, admin_key=KEY)


@pytest.fixture()
def region() -> Iterator[str]:
    """A real POSIX shared-memory region for Triton to map."""
    import tritonclient.utils.shared_memory as shm

    key = f"/cascade_restricted_{os.getpid()}_{secrets.token_hex(4)}"
    handle = shm.create_shared_memory_region("restricted_test", key, REGION_BYTES)
    try:
        yield key
    finally:
        shm.destroy_shared_memory_region(handle)


def _refused(call, *args, **kwargs) -> str:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return str(info.value)


def test_http_shared_memory_needs_the_key(locked: TritonServer, region: str) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(locked.http_address)
    try:
        message = _refused(client.register_system_shared_memory, "r", region, REGION_BYTES)
        assert "403" in message or "restricted" in message.lower() or "admin-key" in message, message
        assert client.get_system_shared_memory_status(headers=HTTP) == []
        client.register_system_shared_memory("r", region, REGION_BYTES, headers=HTTP)
        status = client.get_system_shared_memory_status(headers=HTTP)
        assert [s["name"] for s in status] == ["r"]
        _refused(client.unregister_system_shared_memory, "r")
        client.unregister_system_shared_memory("r", headers=HTTP)
    finally:
        client.close()


def test_grpc_shared_memory_needs_the_key(locked: TritonServer, region: str) -> None:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(locked.grpc_url) as client:
        message = _refused(client.register_system_shared_memory, "g", region, REGION_BYTES)
        assert "admin-key" in message or "PERMISSION_DENIED" in message or "restricted" in message.lower(), message
        client.register_system_shared_memory("g", region, REGION_BYTES, headers=GRPC)
        names = [r.name for r in client.get_system_shared_memory_status(headers=GRPC).regions.values()]
        assert names == ["g"]
        client.unregister_system_shared_memory("g", headers=GRPC)


def test_other_admin_apis_need_the_key(locked: TritonServer) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(locked.http_address)
    try:
        _refused(client.get_model_repository_index)
        _refused(client.get_model_config, "echo")
        _refused(client.get_inference_statistics, "echo")
        _refused(client.get_log_settings)
        _refused(client.get_trace_settings)
        assert client.get_model_config("echo", headers=HTTP)["name"] == "echo"
        assert any(m["name"] == "echo" for m in client.get_model_repository_index(headers=HTTP))
    finally:
        client.close()
    with grpcclient.InferenceServerClient(locked.grpc_url) as client:
        _refused(client.get_model_repository_index)
        _refused(client.unload_model, "echo")
        assert client.is_model_ready("echo"), "a refused unload must not unload"
        _refused(client.get_model_config, "echo", headers=HTTP)  # the HTTP header name does not count
        assert client.get_model_config("echo", headers=GRPC).config.name == "echo"


def test_inference_health_and_metadata_stay_open(locked: TritonServer) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    values = np.array([1, 2, 3], dtype=np.int64)
    with grpcclient.InferenceServerClient(locked.grpc_url) as client:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_model_metadata("echo").name == "echo"
        tensor = grpcclient.InferInput("INPUT0", list(values.shape), "INT64")
        tensor.set_data_from_numpy(values)
        np.testing.assert_array_equal(client.infer("echo", [tensor]).as_numpy("OUTPUT0"), values * 2)
    client = httpclient.InferenceServerClient(locked.http_address)
    try:
        tensor = httpclient.InferInput("INPUT0", list(values.shape), "INT64")
        tensor.set_data_from_numpy(values, binary_data=False)
        np.testing.assert_array_equal(client.infer("echo", [tensor]).as_numpy("OUTPUT0"), values * 2)
    finally:
        client.close()


def test_key_is_not_in_the_server_log(locked: TritonServer) -> None:
    assert locked.log_file is not None and KEY not in locked.log_file.read_text(errors="replace")


def test_bundle_tools_send_the_grpc_key_from_the_environment(locked: TritonServer, monkeypatch) -> None:
    """`cascade rollout` / the sidecar read the repository over gRPC with the key from
    CASCADE_TRITON_ADMIN_KEY (cascade.bundles.state.admin_headers)."""
    from cascade.bundles.state import admin_headers as bundle_headers
    from cascade.bundles.state import connect
    from cascade.serving.admin import ADMIN_KEY_ENV

    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    client = connect(locked.grpc_url)
    _refused(client.get_model_repository_index, headers=bundle_headers())
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
    assert bundle_headers() == GRPC
    index = client.get_model_repository_index(headers=bundle_headers(), as_json=True)["models"]
    assert any(m["name"] == "echo" for m in index)
    client.close()
