"""Session fixtures that start real tritonservers (stopped at session end).

``triton_factory(repo, **TritonServerConfig fields) -> TritonServer`` starts one server per
distinct (repository, options) on free ports and caches it for the session; ``echo_server``
serves ``tests/fixtures/echo_repository``. Other conftest files build on ``triton_factory``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascade.serving.server import TritonServer
from cascade.serving.testing import TritonServerFactory

FIXTURES = Path(__file__).resolve().parent / "fixtures"
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
