"""Test support: start tritonservers on free ports, one per distinct (repository, options).

Used by the session fixtures in ``tests/conftest.py``; any conftest can build on it::

    @pytest.fixture(scope="session")
    def recommend_server(triton_factory):
        return triton_factory(repo, model_control_mode="explicit", load_models=["*"])
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cascade.errors import ServerStartError
from cascade.serving.ports import free_ports
from cascade.serving.server import TritonServer, TritonServerConfig

logger = logging.getLogger(__name__)

PORT_CONFLICT_MARKERS = ("already in use", "address in use")


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Path):
        return str(value.resolve())
    return value


class TritonServerFactory:
    """Callable ``factory(repo, **config_fields) -> TritonServer`` (started and ready).

    Ports are chosen free on 127.0.0.1 (a start that loses a port race is retried with new
    ports); logs go to ``log_dir``. The same repository and options return the same server.
    :meth:`close` stops every server this factory started.
    """

    def __init__(
        self, log_dir: Path, ready_timeout_s: float = 120.0, exit_timeout_s: int = 5, attempts: int = 3
    ) -> None:
        self.log_dir = Path(log_dir)
        self.ready_timeout_s = ready_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.attempts = attempts
        self._servers: dict[Any, TritonServer] = {}

    def __call__(self, model_repository: Path, **options: Any) -> TritonServer:
        repo = Path(model_repository).resolve()
        key = (str(repo), _freeze(options))
        server = self._servers.get(key)
        if server is not None and server.poll() is None:
            return server
        server = self._start(repo, options)
        self._servers[key] = server
        return server

    def _start(self, repo: Path, options: dict[str, Any]) -> TritonServer:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        last_error: ServerStartError | None = None
        for attempt in range(1, self.attempts + 1):
            http, grpc, metrics = free_ports(3)
            fields: dict[str, Any] = {
                "exit_timeout_s": self.exit_timeout_s,
                "ready_timeout_s": self.ready_timeout_s,
                "log_file": self.log_dir / f"{repo.name}-{http}.log",
                **options,
            }
            config = TritonServerConfig(
                model_repository=repo, http_port=http, grpc_port=grpc, metrics_port=metrics, **fields
            )
            server = TritonServer(config)
            server.start()
            try:
                server.wait_until_ready(config.ready_timeout_s)
            except ServerStartError as exc:
                server.stop()
                last_error = exc
                if not any(marker in exc.message.lower() for marker in PORT_CONFLICT_MARKERS):
                    raise
                logger.warning("tritonserver start attempt %d lost a port race; retrying", attempt)
                continue
            except BaseException:
                server.stop()
                raise
            return server
        assert last_error is not None
        raise last_error

    def discard(self, server: TritonServer) -> None:
        """Stop ``server`` and forget it (a later call with its repository starts a new one)."""
        for key, cached in list(self._servers.items()):
            if cached is server:
                del self._servers[key]
        server.stop()

    @property
    def servers(self) -> list[TritonServer]:
        return list(self._servers.values())

    def close(self) -> None:
        """Stop every server started by this factory (errors are logged, not raised)."""
        while self._servers:
            _, server = self._servers.popitem()
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                logger.exception("stopping %r failed", server)

    def __enter__(self) -> TritonServerFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
