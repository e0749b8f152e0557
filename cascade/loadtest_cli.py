"""``cascade loadtest``: a bounded headless Locust run against a local Triton server, then a PNG
of throughput and p50/p95/p99 latency over time and a printed summary.

Runs ``python -m locust -f loadtests/locustfile.py --headless ...`` in its own process group with
a hard wall-clock limit (run time + stop timeout + grace); only loopback hosts are accepted.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cascade.errors import InvalidInputError
from cascade.paths import PROJECT_ROOT, build_dir

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "locustfile.py"
PREFIX = "loadtest"
GRACE_S = 60
_TIMESPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class Protocol(str, Enum):
    grpc = "grpc"
    http = "http"
    both = "both"


class Shape(str, Enum):
    none = "none"
    step = "step"
    spike = "spike"


USER_CLASSES = {
    Protocol.grpc: ["GrpcRecommendUser"],
    Protocol.http: ["HttpRecommendUser"],
    Protocol.both: ["GrpcRecommendUser", "HttpRecommendUser"],
}


def parse_run_time(text: str) -> int:
    """Seconds in ``30``, ``30s``, ``2m``, ``1h30m``, ``1m30s`` (Locust's --run-time forms)."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        match = _TIMESPAN.match(value)
        if not value or match is None:
            raise InvalidInputError(f"--run-time: expected e.g. 30s, 2m or 1m30s, got {text!r}")
        h, m, s = (int(g) if g else 0 for g in match.groups())
        seconds = 3600 * h + 60 * m + s
    if seconds < 1:
        raise InvalidInputError(f"--run-time: expected at least 1 second, got {text!r}")
    return seconds


def require_loopback(host: str) -> str:
    """``host`` if it is a loopback address (or 'localhost'); InvalidInputError otherwise."""
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host
    except ValueError:
        pass
    raise InvalidInputError(
        f"--host: `cascade loadtest` only targets a local server (127.0.0.1, ::1 or localhost), "
        f"got {host!r}; for remote or distributed runs use locust directly (loadtests/README.md)"
    )


def locust_command(
    *, host: str, grpc_port: int, http_port: int, users: int, spawn_rate: float, run_time_s: int,
    protocol: Protocol, data: str, prefix: Path, stop_timeout_s: int, extra: list[str],
) -> list[str]:
    url_host = f"[{host}]" if ":" in host else host
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{run_time_s}s",
        "--stop-timeout", str(stop_timeout_s),
        "--host", f"http://{url_host}:{http_port}", "--grpc-url", f"{url_host}:{grpc_port}",
        "--user-ids", data, "--csv", str(prefix), "--html", f"{prefix}.html",
        *extra, *USER_CLASSES[protocol],
    ]


def run_bounded(cmd: list[str], env: dict[str, str], log: Path, limit_s: float) -> int:
    """Run ``cmd`` in its own process group; SIGINT, then SIGKILL, if it outlives ``limit_s``."""
    with log.open("wb") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                cwd=PROJECT_ROOT, start_new_session=True)
        try:
            return proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            typer.echo(f"locust (pid {proc.pid}) ran past {limit_s:.0f} s; stopping it", err=True)
            os.killpg(proc.pid, signal.SIGINT)
            try:
                return proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def print_summary(rows: list, png: Path | None, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="recommend load test")
    for col in ("type", "name", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="right" if col not in ("type", "name") else "left")
    for r in rows:
        table.add_row(r.type, r.name, str(r.requests), str(r.failures), f"{r.rps:.1f}",
                      f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}", f"{r.p99_ms:.0f}")
    console = Console()
    console.print(table)
    console.print(f"reports: {out}" + (f"  plot: {png}" if png else ""))


def loadtest(
    host: str = typer.Option("127.0.0.1", help="Server host (loopback only)."),
    grpc_port: int = typer.Option(8001, help="Triton gRPC port."),
    http_port: int = typer.Option(8000, help="Triton HTTP port."),
    users: int = typer.Option(20, min=1, help="Concurrent users (the peak for step/spike)."),
    spawn_rate: float = typer.Option(10.0, min=0.1, help="Users started per second."),
    run_time: str = typer.Option("30s", help="Total duration, e.g. 30s, 2m."),
    protocol: Protocol = typer.Option(Protocol.grpc, help="Which user class(es) to run."),
    shape: Shape = typer.Option(Shape.none, help="Load shape (see loadtests/README.md)."),
    data: Optional[str] = typer.Option(
        None, help="Dataset folder (users.parquet/items.parquet) or file of known user ids "
                   "(env CASCADE_USER_IDS)."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default build/loadtest/<time>)."),
    unknown_share: float = typer.Option(0.05, min=0.0, max=1.0, help="Share of unknown users."),
    exclude_share: float = typer.Option(0.1, min=0.0, max=1.0, help="Share sending exclude ids."),
    explore_share: float = typer.Option(0.1, min=0.0, max=1.0, help="Share with exploration."),
    seed: int = typer.Option(0, help="Sampling seed."),
    stop_timeout: int = typer.Option(5, min=0, help="Seconds users get to finish at the end."),
) -> None:
    """Bounded headless Locust run against a local server; writes CSV/HTML/PNG and prints a summary."""
    if str(PROJECT_ROOT) not in sys.path:  # loadtests/ is a folder of the repository, not installed
        sys.path.insert(0, str(PROJECT_ROOT))
    from loadtests.report import aggregate, plot_history, read_history, read_stats, summary_dict

    try:
        require_loopback(host)
        run_time_s = parse_run_time(run_time)
        source = data or os.environ.get("CASCADE_USER_IDS", "")
        if not source:
            raise InvalidInputError("--data: give a dataset folder or a file of known user ids "
                                    "(or set CASCADE_USER_IDS)")
        if not Path(source).exists():
            raise InvalidInputError(f"--data: {source} does not exist")
    except InvalidInputError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    out_dir = Path(out) if out else build_dir() / "loadtest" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / PREFIX
    extra = ["--unknown-share", str(unknown_share), "--exclude-share", str(exclude_share),
             "--explore-share", str(explore_share), "--sample-seed", str(seed)]
    cmd = locust_command(host=host, grpc_port=grpc_port, http_port=http_port, users=users,
                         spawn_rate=spawn_rate, run_time_s=run_time_s, protocol=protocol,
                         data=str(Path(source).resolve()), prefix=prefix,
                         stop_timeout_s=stop_timeout, extra=extra)
    env = dict(os.environ, CASCADE_SHAPE=shape.value)
    log = out_dir / "locust.log"
    typer.echo(f"locust: {users} users, {run_time_s} s, {protocol.value}, shape {shape.value} "
               f"-> {out_dir}")
    code = run_bounded(cmd, env, log, run_time_s + stop_timeout + GRACE_S)
    try:
        rows = read_stats(prefix)
    except Exception as exc:  # noqa: BLE001 - report what locust said instead
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        typer.echo(f"error: no Locust stats ({exc}); locust exit code {code}; log {log}:\n{tail}",
                   err=True)
        raise typer.Exit(1) from None
    png = plot_history(read_history(prefix), prefix.with_suffix(".png"),
                       title=f"recommend: {protocol.value}, {users} users, shape {shape.value}")
    summary = summary_dict(rows) | {"locust_exit_code": code, "command": cmd[1:],
                                    "shape": shape.value, "png": str(png)}
    (out_dir / f"{PREFIX}_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(rows, png, out_dir)
    agg = aggregate(rows)
    if code != 0 or agg.failures:
        typer.echo(f"locust exit code {code}, {agg.failures} failures (see {prefix}_failures.csv)",
                   err=True)
        raise typer.Exit(1)
