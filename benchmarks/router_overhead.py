"""The experiment router's cost (issue 16): c=1 latency and c=8/16 throughput, A/B in one run.

    python -m benchmarks.router_overhead --out-prefix benchmarks/results/router \\
        [--requests 400] [--concurrency 8,16] [--seconds 5] [--rounds 3] [--router-instances 4,8,16]
        [--workdir build/bench-router]

One real bundle tritonserver (``running_bundle_server``) holds bundles A (live) and B; an experiment
with share 0 makes ``recommend`` the router (exposure log on, as by default) and sends every
hash-assigned user to A. Router copies with other instance counts are loaded beside it under other
names (``recommend_r<N>``: the same code and parameters, only the count differs). Arms:
``ensemble`` = ``recommend__A`` directly (what ``recommend`` is without an experiment) and
``router_<N>`` = the router with N instances -> BLS -> ``recommend__A``. All arms run the same
stage models at the same moment:

- c=1: one client alternates request by request, same user, over the arms (paired);
- c=8/16: closed loops of C clients, ``--seconds`` per arm, the arms in turn, ``--rounds`` times
  (order rotated each round); req/s and latency quantiles per arm, pooled over rounds.

Writes ``<prefix>-c1.json`` and ``<prefix>-concurrency.json``. Absolute numbers on the shared 2-core
box are noisy; read the ratios to the ensemble arm.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency import summarize


def _router_copy(url: str, repository: Path, name: str, instances: int) -> None:
    """Load the running router's config under ``name`` with ``instances`` instances."""
    from dataclasses import replace

    from cascade.bundles.models import config_json, write_folder
    from cascade.bundles.state import admin_headers, connect, parameters
    from cascade.bundles.tagging import ENSEMBLE
    from cascade.experiments.control import router_folder
    from cascade.experiments.state import running_experiment

    client = connect(url)
    experiment = running_experiment(client)
    params = parameters(client.get_model_config(ENSEMBLE, headers=admin_headers(), as_json=True)["config"])
    pinned = client.get_model_config(f"{ENSEMBLE}__{experiment.control}", headers=admin_headers(), as_json=True)["config"]
    folder = router_folder(pinned, experiment, params.get("previous_bundle"), params.get("live_since"), instances)
    folder.config.name = name
    folder = replace(folder, name=name)
    write_folder(repository, folder)
    client.load_model(name, config=config_json(folder.config), headers=admin_headers())


def _closed_loop(url: str, model: str, clients: int, seconds: float, seed: int) -> tuple[list[float], int, float]:
    """(latencies ms, errors, wall s) of ``clients`` threads sending back to back for ``seconds``."""
    from cascade.client import RecommendClient

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def worker(index: int) -> None:
        rng = np.random.default_rng(seed * 100 + index)
        with RecommendClient(url, model=model, timeout_s=30) as client:
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    client.recommend(int(rng.integers(0, 400)), k=10)
                    with lock:
                        latencies.append((time.perf_counter() - start) * 1e3)
                except Exception:  # noqa: BLE001 - counted, reported
                    with lock:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    return latencies, errors[0], time.perf_counter() - started


def run(workdir: Path, requests: int, concurrency: list[int], seconds: float, rounds: int,
        router_instances: list[int], out_prefix: Path | None) -> dict[str, Any]:
    from benchmarks.swap import prepare
    from cascade.bundles.manifest import load_manifest
    from cascade.bundles.serve import running_bundle_server
    from cascade.client import RecommendClient
    from cascade.experiments import control

    bundles = prepare(workdir, n_bundles=2)
    id_a = load_manifest(bundles["A"]).bundle_id
    with running_bundle_server(workdir / "server", bundles["A"]) as server:
        url = server.grpc_url
        lock_dir = server.log_file.parent
        control.start(bundles["B"], url, share=0.0, salt="bench", lock_dir=lock_dir, instances=router_instances[0],
                      exposure_log=str(workdir / "exposures"))
        arms = {"ensemble": f"recommend__{id_a}", f"router_{router_instances[0]}": "recommend"}
        for count in router_instances[1:]:
            _router_copy(url, server.config.model_repository, f"recommend_r{count}", count)
            arms[f"router_{count}"] = f"recommend_r{count}"
        clients = {arm: RecommendClient(url, model=model, timeout_s=30) for arm, model in arms.items()}
        c1: dict[str, list[float]] = {arm: [] for arm in arms}
        rng = np.random.default_rng(16)
        try:
            for client in clients.values():  # warm every path
                for user in range(20):
                    client.recommend(user, k=10)
            names = list(arms)
            for i in range(requests):
                user = int(rng.integers(0, 400))
                for arm in names[i % len(names):] + names[:i % len(names)]:
                    start = time.perf_counter()
                    answer = clients[arm].recommend(user, k=10)
                    c1[arm].append((time.perf_counter() - start) * 1e3)
                    assert answer.model_version.startswith(id_a), answer.model_version
        finally:
            for client in clients.values():
                client.close()
        loops: dict[int, dict[str, dict[str, Any]]] = {c: {arm: {"latencies": [], "errors": 0, "requests": 0, "seconds": 0.0}
                                                           for arm in arms} for c in concurrency}
        names = list(arms)
        for r in range(rounds):
            for c in concurrency:
                for arm in names[r % len(names):] + names[:r % len(names)]:
                    lat, errors, wall = _closed_loop(url, arms[arm], c, seconds, seed=r * 10 + c)
                    cell = loops[c][arm]
                    cell["latencies"] += lat
                    cell["errors"] += errors
                    cell["requests"] += len(lat)
                    cell["seconds"] += wall
        control.stop(url, lock_dir=lock_dir)
    note = ("A/B in one run on one server, same stage models at the same moment; 2 shared cores with other "
            "engineers' tests and training running: absolute numbers are noisy, read the ratios to 'ensemble'")
    stats = {arm: summarize(values) for arm, values in c1.items()}
    base = stats["ensemble"]
    c1_result = {
        "benchmark": "router_overhead", "concurrency": 1, "requests_per_arm": requests, "note": note,
        "arms": stats,
        "ratio_p50": {arm: s["p50_ms"] / base["p50_ms"] for arm, s in stats.items()},
        "ratio_p99": {arm: s["p99_ms"] / base["p99_ms"] for arm, s in stats.items()},
        "paired_overhead_ms_median": {arm: float(np.median(np.asarray(c1[arm]) - np.asarray(c1["ensemble"])))
                                      for arm in arms if arm != "ensemble"},
    }
    conc_result: dict[str, Any] = {"benchmark": "router_concurrency", "seconds_per_arm_per_round": seconds,
                                   "rounds": rounds, "note": note, "levels": {}}
    for c, cells in loops.items():
        rows = {arm: {"rps": cell["requests"] / cell["seconds"], "errors": cell["errors"],
                      **summarize(cell["latencies"])} for arm, cell in cells.items()}
        conc_result["levels"][str(c)] = {
            "arms": rows,
            "rps_ratio": {arm: row["rps"] / rows["ensemble"]["rps"] for arm, row in rows.items()},
            "p99_ratio": {arm: row["p99_ms"] / rows["ensemble"]["p99_ms"] for arm, row in rows.items()},
        }
    if out_prefix is not None:
        out_prefix.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out_prefix}-c1.json").write_text(json.dumps(c1_result, indent=2))
        Path(f"{out_prefix}-concurrency.json").write_text(json.dumps(conc_result, indent=2))
    return {"c1": c1_result, "concurrency": conc_result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/bench-router"))
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", default="8,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--router-instances", default="4,8,16")
    parser.add_argument("--out-prefix", type=Path, default=None)
    args = parser.parse_args()
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    print(json.dumps(run(args.workdir, args.requests, ints(args.concurrency), args.seconds, args.rounds,
                         ints(args.router_instances), args.out_prefix), indent=2))


if __name__ == "__main__":
    main()
