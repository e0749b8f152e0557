"""``cascade serve``: run tritonserver on a model repository until Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import time
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Annotated, Optional

import typer

from cascade.errors import CascadeError, NotFoundError, UnavailableError
from cascade.paths import latest_export_pointer

ENSEMBLE = "recommend"

POLL_INTERVAL_S = 0.5


class ModelControl(str, Enum):
    none = "none"
    poll = "poll"
    explicit = "explicit"


class _StopRequested(BaseException):
    """Raised by the signal handler so start-up, the readiness wait, the first rollout and the idle
    loop all end. A BaseException: the rollout's `except Exception` (e.g. a model load that fails
    without failing the rollout) must not swallow a SIGTERM (seen: the pod would never stop)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _model_repository_of(path: Path) -> Path:
    """An export root (``cascade export --out``) serves its ``model_repository/``; any other
    folder is taken as a Triton model repository."""
    from cascade.online.export_layout import MANIFEST

    if (path / MANIFEST).is_file() and (path / "model_repository").is_dir():
        return path / "model_repository"
    return path


def resolve_repository(repo: Path | None) -> Path:
    """``repo`` if given, else the export named in ``latest_export_pointer()``; an export root
    resolves to its ``model_repository/``."""
    if repo is not None:
        return _model_repository_of(Path(repo))
    pointer = latest_export_pointer()
    if not pointer.is_file():
        raise NotFoundError(
            f"no export yet ({pointer} is missing): run `cascade export ...` first, "
            "or pass a model repository folder: `cascade serve REPO`"
        )
    text = pointer.read_text().strip()
    if not text:
        raise NotFoundError(f"{pointer} is empty; expected the path of the latest export")
    path = Path(text)
    if not path.is_absolute():
        path = pointer.parent / path
    if not path.is_dir():
        raise NotFoundError(
            f"latest export {path} (named in {pointer}) is not a folder; run `cascade export ...` again"
        )
    return _model_repository_of(path)


def export_root_of(repo: Path | None) -> Path | None:
    """The export root ``repo`` (or the latest export) names, None for a plain model repository."""
    from cascade.online.export_layout import MANIFEST

    resolved = resolve_repository(repo)
    root = resolved.parent if resolved.name == "model_repository" else resolved
    return root if (root / MANIFEST).is_file() else None


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signum)


def serve(
    repo: Annotated[
        Optional[Path],
        typer.Argument(help="Model repository folder. Default: the latest `cascade export`."),
    ] = None,
    http_port: Annotated[int, typer.Option(help="HTTP/REST (KServe v2) port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port.")] = 8002,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for all interfaces.")
    ] = "127.0.0.1",
    model_control_mode: Annotated[
        ModelControl, typer.Option(help="Triton model control mode.")
    ] = ModelControl.none,
    load_model: Annotated[
        Optional[list[str]],
        typer.Option(help="Model to load at start (explicit mode; repeatable). Default: all."),
    ] = None,
    log_verbose: Annotated[int, typer.Option(help="tritonserver --log-verbose level.")] = 0,
    log_file: Annotated[
        Optional[Path], typer.Option(help="Server log file. Default: build/logs/tritonserver-*.log")
    ] = None,
    extra_arg: Annotated[
        Optional[list[str]],
        typer.Option(help="Extra tritonserver option, e.g. --extra-arg=--cache-config=local,size=1048576 (repeatable)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to be ready.")] = 120.0,
    exit_timeout: Annotated[
        int, typer.Option(help="On Ctrl-C/SIGTERM, seconds tritonserver drains in-flight requests (--exit-timeout-secs).")
    ] = 10,
    stub_watchdog: Annotated[
        bool, typer.Option(help="Restart a model whose Python stub died (explicit mode), else stop the server.")
    ] = True,
    bundles: Annotated[
        bool, typer.Option(help="An export is served as a bundle: explicit model control, so `cascade rollout` "
                                "and `cascade rollback` work. --no-bundles serves its model_repository as is.")
    ] = True,
    repository: Annotated[
        Optional[Path], typer.Option(help="Bundle repository folder (default build/bundles/repository-<grpc port>).")
    ] = None,
    interaction_log: Annotated[
        Optional[str], typer.Option(help="Where the `interactions` model of every bundle logs events: a folder or an "
                                         "object-store URL (default $CASCADE_INTERACTIONS_INTERACTION_LOG, else "
                                         "build/interaction_log). --no-bundles: the export's own interaction_log/.")
    ] = None,
    health_port: Annotated[
        Optional[int], typer.Option(help="Serve GET /ready and /live on this port (Kubernetes probes): /ready is 200 "
                                         "only while --ready-model is ready and no Python stub is dead.")
    ] = None,
    ready_model: Annotated[
        Optional[str], typer.Option(help="The model /ready waits for. Default: recommend (if served), else every model.")
    ] = None,
) -> None:
    """Serve an export as a bundle (or a model repository) with the bundled tritonserver until Ctrl-C or SIGTERM."""
    from cascade.bundles.serve import INTERACTION_LOG_ENV
    from cascade.serving.admin import ADMIN_KEY_ENV, admin_key_from_env
    from cascade.serving.server import TritonServer, TritonServerConfig

    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    server: TritonServer | None = None
    try:
        mode = model_control_mode.value
        loads = list(load_model or [])
        if mode == "explicit" and not loads:
            loads = ["*"]
        fields = dict(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, host=host,
                      log_verbose=log_verbose, log_file=log_file, extra_args=list(extra_arg or []),
                      admin_key=admin_key_from_env(),  # restricts the admin-class APIs when set
                      stub_watchdog=stub_watchdog, health_port=health_port, exit_timeout_s=exit_timeout)
        export = export_root_of(repo) if bundles and mode == "none" and not loads else None
        if ready_model is None and export is None and not (resolve_repository(repo) / ENSEMBLE).is_dir():
            fields["ready_model"] = None  # a plain repository without `recommend`: Triton's own readiness
        elif ready_model is not None:
            fields["ready_model"] = ready_model
        if export is not None:
            from cascade.bundles.serve import (
                bundle_server_config,
                default_repository,
                interaction_log_env,
                prepare_repository,
            )

            config = bundle_server_config(prepare_repository(repository or default_repository(grpc_port)),
                                          env=interaction_log_env(interaction_log), **fields)
        else:
            if interaction_log is not None:
                from cascade.bundles.serve import interaction_log_env

                fields["env"] = interaction_log_env(interaction_log)
            config = TritonServerConfig(
                model_repository=resolve_repository(repo).resolve(),
                model_control_mode=mode,  # type: ignore[arg-type]
                load_models=loads,
                **fields,  # type: ignore[arg-type]
            )
        server = TritonServer(config)
        server.start()
        seconds = server.wait_until_ready(timeout)
        if export is not None:
            from cascade.bundles.rollout import rollout

            result = rollout(export, server.grpc_url, grace_s=0.0)
            seconds += result.seconds.get("total", 0.0)
            typer.echo(f"bundle {result.bundle_id} is live (roll out another: cascade rollout EXPORT --url {server.grpc_url})")
        typer.echo(
            f"tritonserver ready in {seconds:.1f} s (pid {server.pid}), repository "
            f"{config.model_repository}, listening on {host}\n"
            f"  HTTP     {server.http_url}\n"
            f"  gRPC     {server.grpc_url}\n"
            f"  metrics  {server.metrics_url}\n"
            f"  log      {server.log_file}\n"
            + (f"  events   {config.env[INTERACTION_LOG_ENV]} (the `interactions` model's log, kept across rollouts)\n"
               if INTERACTION_LOG_ENV in config.env else "")
            + (f"  health   {server.health_url}/ready (503 while {config.ready_model or 'a model'} is not ready "
               "or a stub is dead)\n" if server.health_url else "")
            + (f"  admin APIs need the admin-key header (${ADMIN_KEY_ENV} or ${ADMIN_KEY_ENV}_FILE)\n" if config.admin_key else "")
            + "Press Ctrl-C to stop."
        )
        while (code := server.poll()) is None:
            time.sleep(POLL_INTERVAL_S)
        raise UnavailableError(
            f"tritonserver (pid {server.pid}) exited with code {code}; log {server.log_file}, "
            f"last lines:\n{server.log_tail()}"
        )
    except _StopRequested as stop:
        typer.echo(f"{stop}: stopping tritonserver", err=True)
    except CascadeError as error:
        typer.secho(error.message, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the stop
        try:
            if server is not None:
                code = server.stop()
                if code is not None:
                    typer.echo(f"tritonserver stopped (exit code {code})", err=True)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
