"""Start a tritonserver that serves bundles: explicit model control on a bundle repository (a
folder of its own, not an export), the ``cascade_bundle_info`` model, then the first rollout."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cascade.bundles.models import INFO_MODEL, info_model_folder, write_folder
from cascade.errors import InvalidInputError
from cascade.paths import build_dir


INTERACTION_LOG_ENV = "CASCADE_INTERACTIONS_INTERACTION_LOG"  # the `interactions` model's parameter override


def default_repository(grpc_port: int) -> Path:
    return build_dir() / "bundles" / f"repository-{grpc_port}"


def default_interaction_log() -> str:
    """Where a bundle server's ``interactions`` model logs events unless told otherwise:
    ``$CASCADE_INTERACTIONS_INTERACTION_LOG`` (Kubernetes sets an object-store URL), else
    ``<build>/interaction_log``. One log for every bundle: the model's own default (a folder inside
    its export) would split the events across bundles at each rollout and write into a released,
    signed bundle."""
    return os.environ.get(INTERACTION_LOG_ENV) or str(build_dir() / "interaction_log")


def interaction_log_env(interaction_log: str | os.PathLike | None) -> dict[str, str]:
    """The server environment that points every bundle's ``interactions`` model at one log.
    Checked here, before the server starts: a log the model cannot open would only fail its load."""
    value = str(interaction_log) if interaction_log is not None else default_interaction_log()
    expected = "a folder or an object-store URL such as s3://bucket/interactions"
    if not value.strip():
        raise InvalidInputError(f"--interaction-log is empty; expected {expected}")
    if "://" not in value:
        return {INTERACTION_LOG_ENV: str(Path(value).expanduser().resolve())}
    import fsspec

    scheme = value.split("://", 1)[0]
    if scheme not in fsspec.available_protocols():
        raise InvalidInputError(f"--interaction-log {value!r}: unknown scheme {scheme!r}; expected {expected}")
    return {INTERACTION_LOG_ENV: value}


def prepare_repository(repository: Path, fresh: bool = True) -> Path:
    """An empty bundle repository holding only the info model (``fresh`` clears an old one)."""
    repository = Path(repository).resolve()
    repository.mkdir(parents=True, exist_ok=True)
    if fresh:  # empty it, keep the folder: on Kubernetes it is a volume's mount point (not removable)
        for child in repository.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    write_folder(repository, info_model_folder("", repository))
    return repository


def bundle_server_config(repository: Path, **fields: Any):
    """TritonServerConfig for a bundle server (``fields``: ports, host, log options, ...)."""
    from cascade.serving.server import TritonServerConfig

    return TritonServerConfig(model_repository=repository, model_control_mode="explicit",
                              load_models=[INFO_MODEL], **fields)


@contextmanager
def running_bundle_server(workdir: Path, first_bundle: Path | None, *, ready_timeout_s: float = 120.0) -> Iterator[Any]:
    """A bundle tritonserver on free loopback ports, its repository and log under ``workdir``, with
    ``first_bundle`` rolled out (None: nothing rolled out, e.g. to time the first rollout); stopped
    (by its pid) on exit; the ``interactions`` model logs to ``workdir/interaction_log`` (or
    ``$CASCADE_INTERACTIONS_INTERACTION_LOG``), never inside a bundle. For tests and benchmarks."""
    from cascade.bundles.rollout import rollout
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer

    workdir = Path(workdir)
    http, grpc, metrics = free_ports(3)
    repository = prepare_repository(workdir / "repository")
    server = TritonServer(bundle_server_config(repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                                               log_file=workdir / "triton.log", exit_timeout_s=5,
                                               env=interaction_log_env(os.environ.get(INTERACTION_LOG_ENV)
                                                                       or workdir / "interaction_log")))
    server.start()
    try:
        server.wait_until_ready(ready_timeout_s)
        if first_bundle is not None:
            rollout(first_bundle, server.grpc_url, grace_s=0.0, lock_dir=workdir)
        yield server
    finally:
        server.stop()
