"""The experiment router's overhead on c=1 latency (issue 16), A/B in one run.

    python -m benchmarks.router_overhead --out benchmarks/results/router-overhead-c1.json
        [--requests 600] [--workdir build/bench-router]

One real tritonserver holds bundles A (live) and B; an experiment with share 0 makes `recommend`
the router and sends every hash-assigned user to A. One client (c=1, loopback, gRPC) then
alternates, request by request and with the same user, between `recommend` (router -> BLS ->
`recommend__A`) and `recommend__A` directly (the plain ensemble pinned to A, what `recommend` is
without an experiment). Both arms run the same stage models at the same moment, so the ratio is
the router's cost; absolute numbers on a shared 2-core box are noise, the ratio less so.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency import summarize


def run(workdir: Path, requests: int, out: Path | None) -> dict[str, Any]:
    from benchmarks.swap import prepare
    from cascade.bundles.manifest import load_manifest
    from cascade.bundles.rollout import rollout
    from cascade.bundles.serve import bundle_server_config, prepare_repository
    from cascade.client import RecommendClient
    from cascade.experiments import control
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer

    bundles = prepare(workdir, n_bundles=2)
    id_a = load_manifest(bundles["A"]).bundle_id
    http, grpc, metrics = free_ports(3)
    repository = prepare_repository(workdir / "repository")
    server = TritonServer(bundle_server_config(repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                                               log_file=workdir / "triton.log", exit_timeout_s=5))
    server.start()
    try:
        server.wait_until_ready(120)
        rollout(bundles["A"], server.grpc_url, grace_s=0.0, lock_dir=workdir)
        control.start(bundles["B"], server.grpc_url, share=0.0, salt="bench", lock_dir=workdir)
        arms = {"router": "recommend", "ensemble": f"recommend__{id_a}"}
        latencies: dict[str, list[float]] = {arm: [] for arm in arms}
        clients = {arm: RecommendClient(server.grpc_url, model=model, timeout_s=30) for arm, model in arms.items()}
        rng = np.random.default_rng(16)
        try:
            for client in clients.values():  # warm both paths
                for user in range(20):
                    client.recommend(user, k=10)
            for i in range(requests):
                user = int(rng.integers(0, 400))
                order = ("router", "ensemble") if i % 2 == 0 else ("ensemble", "router")
                for arm in order:
                    start = time.perf_counter()
                    answer = clients[arm].recommend(user, k=10)
                    latencies[arm].append((time.perf_counter() - start) * 1e3)
                    assert answer.model_version.startswith(id_a), answer.model_version
        finally:
            for client in clients.values():
                client.close()
        control.stop(server.grpc_url, lock_dir=workdir)
    finally:
        server.stop()
    stats = {arm: summarize(values) for arm, values in latencies.items()}
    paired = np.asarray(latencies["router"]) - np.asarray(latencies["ensemble"])
    result = {
        "benchmark": "router_overhead", "concurrency": 1, "requests_per_arm": requests,
        "note": ("A/B interleaved request by request in one run, same users, same stage models; 2 shared cores "
                 "with other engineers' tests and training running: absolute ms are noisy, read the ratios"),
        "arms": stats,
        "ratio_p50": stats["router"]["p50_ms"] / stats["ensemble"]["p50_ms"],
        "ratio_p99": stats["router"]["p99_ms"] / stats["ensemble"]["p99_ms"],
        "ratio_mean": stats["router"]["mean_ms"] / stats["ensemble"]["mean_ms"],
        "paired_overhead_ms": {"median": float(np.median(paired)), "mean": float(paired.mean())},
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/bench-router"))
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.workdir, args.requests, args.out), indent=2))


if __name__ == "__main__":
    main()
