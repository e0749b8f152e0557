"""``cascade demo``: generate the demo dataset, train, export, serve, and show recommendations
through gRPC. Every step is cached by input hash, so a second run only starts the server."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

import typer

from cascade.console import cli_errors, console, recommendation_table
from cascade.paths import build_dir

T = TypeVar("T")

DEMO_PARAMS = {"n_users": 20_000, "n_items": 10_000, "n_interactions": 1_000_000, "seed": 42, "test_fraction": 0.2}


def _step(title: str, fn: Callable[[], T]) -> T:
    started = time.perf_counter()
    console.rule(f"[bold]{title}")
    result = fn()
    console.print(f"[green]done[/green] in {time.perf_counter() - started:.1f} s")
    return result


def _dataset(out: Path) -> Path:
    """The demo dataset, regenerated only when its parameters changed."""
    from cascade.workflows.dataset import DatasetInfo
    from cascade.workflows.synthetic import SyntheticConfig, generate

    config = SyntheticConfig(**DEMO_PARAMS)
    if (out / "dataset.json").is_file():
        info = DatasetInfo.load(out)
        if info.params == config.model_dump():
            console.print(f"reusing {out} ({info.n_train + info.n_test:,} interactions)")
            return out
    generate(out, config, name="demo")
    return out


def _sample_users(data: Path, n: int) -> list[int]:
    import numpy as np
    import pandas as pd

    users = pd.read_parquet(data / "train.parquet", columns=["user_id"])["user_id"].to_numpy()
    counts = np.unique(users, return_counts=True)
    busy = counts[0][np.argsort(-counts[1], kind="stable")]
    rng = np.random.default_rng(7)
    return [int(u) for u in rng.choice(busy[: max(100, n)], size=n, replace=False)]


def _show(grpc_url: str, users: list[int], unknown_user: int) -> None:
    from cascade.client import RecommendClient

    with RecommendClient(grpc_url) as client:
        for user in users + [unknown_user]:
            started = time.perf_counter()
            answer = client.recommend(user, k=10)
            ms = (time.perf_counter() - started) * 1000
            console.print(recommendation_table(answer, f"user {user}: {ms:.1f} ms over gRPC"))
        console.print(f"model_version: {answer.model_version}")


def _how_to_query(http_port: int, grpc_port: int, metrics_port: int, user: int) -> None:
    console.rule("[bold]Query it yourself")
    console.print(
        f"""[bold]CLI[/bold]     cascade recommend --user {user} --k 10 --url 127.0.0.1:{grpc_port}

[bold]Python[/bold]  from cascade.client import RecommendClient
        with RecommendClient("127.0.0.1:{grpc_port}") as client:
            print(client.recommend({user}, k=10, exclude=[], explore=0.0))

[bold]curl[/bold]    curl -s -X POST localhost:{http_port}/v2/models/recommend/infer -d '{{"inputs": [
          {{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [{user}]}},
          {{"name": "top_k", "datatype": "INT32", "shape": [1], "data": [10]}},
          {{"name": "exclude_item_ids", "datatype": "INT64", "shape": [0], "data": []}},
          {{"name": "explore", "datatype": "FP32", "shape": [1], "data": [0.0]}}]}}'

[bold]metrics[/bold] curl -s localhost:{metrics_port}/metrics | grep -E 'cascade_|nv_inference_request_success'""",
        highlight=False,
    )


def demo(
    http_port: int = typer.Option(8000, help="HTTP port."),
    grpc_port: int = typer.Option(8001, help="gRPC port."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port."),
    users: int = typer.Option(3, help="How many demo users to show."),
) -> None:
    """Build everything (cached), start Triton, print recommendations; serve until Ctrl-C.

    With CASCADE_DEMO_EXIT=1 the server is stopped and the command exits 0 after printing."""
    from cascade.serving.server import TritonServer, TritonServerConfig
    from cascade.workflows.export import export_repository

    root = build_dir()
    started = time.perf_counter()
    with cli_errors():
        data = _step("1/4 dataset (synthetic, 20k users x 10k items x 1M interactions)", lambda: _dataset(root / "data" / "demo"))
        result = _step(
            "2/4 preprocessing, two-tower + DLRM training, FAISS index, Feast apply/materialize, export",
            lambda: export_repository(data, root / "exports" / "demo"),
        )
        config = TritonServerConfig(
            model_repository=result.root / "model_repository",
            http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
        )
        server = TritonServer(config)
        _step("3/4 start tritonserver (candidates, ranking, interactions + the `recommend` ensemble)", lambda: (server.start(), server.wait_until_ready(180.0)))
    try:
        sample = _sample_users(data, users)
        _step("4/4 recommendations through gRPC", lambda: _show(f"127.0.0.1:{grpc_port}", sample, unknown_user=999_999_999))
        _how_to_query(http_port, grpc_port, metrics_port, sample[0])
        console.print(f"\n[bold green]demo ready[/bold green] in {time.perf_counter() - started:.0f} s; "
                      f"export {result.manifest.version} at {result.root}; server pid {server.pid}, log {config.log_file or 'build/logs'}")
        if os.environ.get("CASCADE_DEMO_EXIT") == "1":
            return
        console.print("serving until Ctrl-C ...")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.is_set():
            if server.poll() is not None:
                console.print(f"[red]tritonserver exited[/red]\n{server.log_tail()}")
                raise typer.Exit(code=1)
            stop.wait(1.0)
    finally:
        server.stop()
        console.print("server stopped")
