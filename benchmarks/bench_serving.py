"""Serving benchmark of the ``recommend`` ensemble against a running Triton server.

    python benchmarks/bench_serving.py --export build/exports/demo --data build/data/demo --catalog demo
    python benchmarks/bench_serving.py --model-repository build/exports/demo \
        --data build/data/demo --catalog demo [--host 127.0.0.1 --grpc-port 8001]

With ``--export`` the benchmark starts its own tritonserver on free loopback ports (extra server
options with ``--server-arg``) and stops it (by pid) at the end; otherwise it uses a running one.

Measures, with one seeded Zipf stream of known users (unknown users, excludes, exploration are
off unless asked):

1. concurrency 1, gRPC: p50/p99 over ``--requests`` (>= 2,000) sequential requests, after a
   warm-up; Triton's statistics API snapshots around it give the per-model (per-stage) breakdown;
2. the closed-loop throughput curve over ``--levels`` (each bounded by ``--level-seconds``), and
   the knee: the first level whose p99 crosses ``--p99-limit-ms`` (50);
3. the in-process floor (``InProcessRecommender``, same requests, no Triton) and the ratio
   Triton p50 / floor p50;
4. when ``recommend`` has the response cache on: concurrency 1 again with a fresh ``seed`` per
   request (uncached) and with a small repeated request set (cached), reported separately.

Prints a table and writes ``benchmarks/results/serving-<catalog>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.closed_loop import LevelSpec, run_level  # noqa: E402
from benchmarks.latency import find_knee, summarize  # noqa: E402
from benchmarks.triton_stats import breakdown, snapshot  # noqa: E402
from loadtests.sampling import RecommendRequest, RequestMix, RequestSampler, load_ids  # noqa: E402

DEFAULT_FLOOR = "cascade.online.pipeline:InProcessRecommender"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--model-repository", type=Path, default=None,
                   help="exported model repository (loaded in process for the floor)")
    p.add_argument("--export", type=Path, default=None,
                   help="export root: start (and stop) a tritonserver on it for the run")
    p.add_argument("--server-arg", action="append", default=[], help="extra tritonserver option")
    p.add_argument("--data", required=True, help="dataset folder or file of known user ids")
    p.add_argument("--catalog", default="demo", help="name for the results file")
    p.add_argument("--requests", type=int, default=2000, help="measured requests at concurrency 1")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--levels", default="1,2,4,8,16,32", help="concurrency levels of the curve")
    p.add_argument("--level-seconds", type=float, default=5.0)
    p.add_argument("--level-warmup-seconds", type=float, default=1.0)
    p.add_argument("--processes", type=int, default=2, help="load-generator processes per level")
    p.add_argument("--p99-limit-ms", type=float, default=50.0)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--unknown-share", type=float, default=0.0)
    p.add_argument("--exclude-share", type=float, default=0.0)
    p.add_argument("--explore-share", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--floor", default=DEFAULT_FLOOR, help="module:Class with .load(repo).recommend()")
    p.add_argument("--skip-floor", action="store_true")
    p.add_argument("--skip-curve", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results/serving-<catalog>.json")
    args = p.parse_args(argv)
    if args.model_repository is None and args.export is None:
        p.error("one of --export or --model-repository is required")
    if args.model_repository is None:
        args.model_repository = args.export
    if args.requests < 1 or args.warmup < 0:
        p.error("--requests must be >= 1 and --warmup >= 0")
    return args


def sequential_grpc(client: Any, requests: list[RecommendRequest]) -> tuple[np.ndarray, int, list[str]]:
    """Latencies (ms) of ``requests`` sent one after another; failures counted, not timed."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from loadtests.wire import MODEL_NAME, grpc_inputs

    outputs = [grpcclient.InferRequestedOutput(n) for n in ("item_ids", "scores", "degraded")]
    latencies: list[float] = []
    errors: list[str] = []
    for req in requests:
        inputs = grpc_inputs(req)
        start = time.perf_counter()
        try:
            client.infer(MODEL_NAME, inputs, outputs=outputs)
        except InferenceServerException as exc:
            errors.append(f"{exc.status()}: {exc.message()}")
            continue
        latencies.append((time.perf_counter() - start) * 1000.0)
    return np.asarray(latencies), len(errors), errors[:5]


def measure_c1(client: Any, warm: list[RecommendRequest], reqs: list[RecommendRequest]) -> dict[str, Any]:
    sequential_grpc(client, warm)
    before = snapshot(client)
    lat, n_err, samples = sequential_grpc(client, reqs)
    after = snapshot(client)
    return {"latency": summarize(lat), "errors": n_err, "error_samples": samples,
            "stages": breakdown(before, after)}


def in_process_floor(spec: str, repo: Path, warm: list[RecommendRequest],
                     reqs: list[RecommendRequest]) -> dict[str, Any]:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        return {"available": False, "reason": f"{spec}: {exc}"}
    t0 = time.perf_counter()
    rec = factory.load(repo)
    load_s = time.perf_counter() - t0

    def call(r: RecommendRequest) -> None:
        rec.recommend(r.user_id, r.top_k, tuple(int(x) for x in r.exclude_item_ids), r.explore, r.seed)

    for r in warm:
        call(r)
    lat = []
    for r in reqs:
        start = time.perf_counter()
        call(r)
        lat.append((time.perf_counter() - start) * 1000.0)
    return {"available": True, "load_s": load_s, "latency": summarize(lat)}


def cache_enabled(client: Any) -> bool:
    from loadtests.wire import MODEL_NAME

    config = client.get_model_config(MODEL_NAME, as_json=True).get("config", {})
    return bool(config.get("response_cache", {}).get("enable", False))


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    c1 = result["concurrency_1"]["latency"]
    floor = result["floor"]
    head = Table(title=f"recommend @ concurrency 1 ({result['catalog']})")
    for col in ("path", "requests", "p50 ms", "p99 ms", "mean ms"):
        head.add_column(col, justify="left" if col == "path" else "right")
    head.add_row("triton gRPC", str(c1["count"]), f"{c1['p50_ms']:.2f}", f"{c1['p99_ms']:.2f}",
                 f"{c1['mean_ms']:.2f}")
    for key in ("uncached", "cached"):
        if key in result.get("cache", {}):
            lat = result["cache"][key]["latency"]
            head.add_row(f"triton {key}", str(lat["count"]), f"{lat['p50_ms']:.2f}",
                         f"{lat['p99_ms']:.2f}", f"{lat['mean_ms']:.2f}")
    if floor.get("available"):
        fl = floor["latency"]
        head.add_row("in-process floor", str(fl["count"]), f"{fl['p50_ms']:.2f}",
                     f"{fl['p99_ms']:.2f}", f"{fl['mean_ms']:.2f}")
    console.print(head)
    if result.get("ratio_p50_triton_over_floor") is not None:
        console.print(f"Triton p50 / floor p50 = {result['ratio_p50_triton_over_floor']:.2f}")
    elif not floor.get("available"):
        console.print(f"floor unavailable: {floor.get('reason')}")
    stages = Table(title="per-model time per request at concurrency 1 (Triton statistics, ms)")
    for col in ("model", "req", "req/exec", "total", "queue", "in", "infer", "out", "cache hit"):
        stages.add_column(col, justify="left" if col == "model" else "right")
    for row in result["concurrency_1"]["stages"]:
        rpe = row["requests_per_execution"]
        stages.add_row(row["model"], str(row["requests"]), f"{rpe:.2f}" if rpe else "-",
                       f"{row['success_ms']:.3f}", f"{row['queue_ms']:.3f}",
                       f"{row['compute_input_ms']:.3f}", f"{row['compute_infer_ms']:.3f}",
                       f"{row['compute_output_ms']:.3f}", str(row["cache_hits"]))
    console.print(stages)
    if result.get("curve"):
        curve = Table(title="closed-loop throughput curve (gRPC)")
        for col in ("concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"):
            curve.add_column(col, justify="right")
        for row in result["curve"]:
            curve.add_row(str(row["concurrency"]), f"{row['rps']:.0f}", f"{row['p50_ms']:.2f}",
                          f"{row['p95_ms']:.2f}", f"{row['p99_ms']:.2f}", str(row["errors"]))
        console.print(curve)
        top = result["curve"][-1]
        busy = Table(title=f"per-stage ms per request at concurrency {top['concurrency']} (where the knee shows)")
        for col in ("model", "req/exec", "queue", "infer", "in+out"):
            busy.add_column(col, justify="left" if col == "model" else "right")
        for row in top.get("stages", []):
            rpe = row["requests_per_execution"]
            busy.add_row(row["model"], f"{rpe:.2f}" if rpe else "-", f"{row['queue_ms']:.3f}",
                         f"{row['compute_infer_ms']:.3f}", f"{row['compute_input_ms'] + row['compute_output_ms']:.3f}")
        console.print(busy)
        knee = result["knee"]
        console.print(f"knee (p99 > {knee['p99_limit_ms']:.0f} ms): first at concurrency "
                      f"{knee['first_concurrency_over_limit']}; best within limit "
                      f"{knee['max_rps_within_limit'] or 0:.0f} req/s at concurrency "
                      f"{knee['concurrency_at_max_rps_within_limit']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.export is None:
        return run(args)
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    http, grpc, metrics = free_ports(3)
    server = TritonServer(TritonServerConfig(
        model_repository=(args.export / "model_repository").resolve(), http_port=http, grpc_port=grpc,
        metrics_port=metrics, extra_args=list(args.server_arg),
        log_file=ROOT / "build" / "logs" / f"bench-serving-{args.catalog}.log"))
    server.start()
    try:
        print(f"tritonserver pid {server.pid} ready in {server.wait_until_ready(900):.1f} s", flush=True)
        args.host, args.grpc_port = "127.0.0.1", grpc
        return run(args, server_args=list(args.server_arg))
    finally:
        server.stop()


def run(args: argparse.Namespace, server_args: list[str] | None = None) -> int:
    import os

    import tritonclient.grpc as grpcclient

    url = f"{args.host}:{args.grpc_port}"
    user_ids = load_ids(args.data, "user")
    mix = RequestMix(top_k=args.top_k, unknown_share=args.unknown_share,
                     exclude_share=args.exclude_share, explore_share=args.explore_share)
    items = load_ids(args.data, "item") if Path(args.data).is_dir() and args.exclude_share else None
    stream = RequestSampler(user_ids, mix, items, seed=args.seed)
    warm, reqs = stream.take(args.warmup), stream.take(args.requests)

    client = grpcclient.InferenceServerClient(url=url)
    try:
        if not client.is_model_ready("recommend"):
            print(f"error: model `recommend` is not ready at {url}", file=sys.stderr)
            return 2
        result: dict[str, Any] = {
            "catalog": args.catalog, "server": url, "model_repository": str(args.model_repository),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": __import__("os").cpu_count()},
            "request_mix": asdict(mix), "seed": args.seed, "n_known_users": int(user_ids.size),
            "server_args": server_args, "loadavg_start": os.getloadavg(),
        }
        if server_args is not None and warm:  # we started the server: these are its first requests
            first, _, _ = sequential_grpc(client, warm[:3])
            result["first_requests_ms"] = [round(float(x), 2) for x in first]
            print(f"first 3 requests after ready: {result['first_requests_ms']} ms", flush=True)
        print(f"concurrency 1: {args.warmup} warm-up + {args.requests} requests ...", flush=True)
        result["concurrency_1"] = measure_c1(client, warm, reqs)
        cached = cache_enabled(client)
        result["cache"] = {"enabled": cached}
        if cached:
            n = max(200, args.requests // 2)
            fresh = RequestSampler(user_ids, RequestMix(**{**asdict(mix), "send_seed": True}),
                                   items, seed=args.seed + 1)
            result["cache"]["uncached"] = measure_c1(client, fresh.take(20), fresh.take(n))
            repeated = RequestSampler(user_ids, mix, items, seed=args.seed + 2).take(32)
            result["cache"]["cached"] = measure_c1(client, repeated, (repeated * (n // 32 + 1))[:n])
    finally:
        client.close()

    if not args.skip_curve:
        curve = []
        for level in (int(x) for x in args.levels.split(",") if x.strip()):
            print(f"concurrency {level}: {args.level_seconds:.0f} s ...", flush=True)
            spec = LevelSpec(url, level, args.level_warmup_seconds, args.level_seconds, user_ids,
                             asdict(mix), args.seed + level)
            stats_client = grpcclient.InferenceServerClient(url=url)
            before = snapshot(stats_client)
            out = run_level(spec, args.processes)
            after = snapshot(stats_client)
            stats_client.close()
            curve.append({"concurrency": level, "rps": out["rps"], "errors": out["errors"],
                          "error_samples": out["error_samples"], "loadavg_1m": os.getloadavg()[0],
                          **{k: v for k, v in summarize(out["latencies_ms"]).items()},
                          "stages": breakdown(before, after)})
        result["curve"] = curve
        result["knee"] = find_knee(curve, args.p99_limit_ms)
        result["loadavg_after_curve"] = os.getloadavg()

    if args.skip_floor:
        result["floor"] = {"available": False, "reason": "--skip-floor"}
    else:
        print("in-process floor ...", flush=True)
        result["floor"] = in_process_floor(args.floor, args.model_repository, warm, reqs)
    floor_p50 = result["floor"].get("latency", {}).get("p50_ms") if result["floor"].get("available") else None
    result["ratio_p50_triton_over_floor"] = (
        result["concurrency_1"]["latency"]["p50_ms"] / floor_p50 if floor_p50 else None)

    out_path = args.out or ROOT / "benchmarks" / "results" / f"serving-{args.catalog}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=float))
    print_report(result)
    print(f"wrote {out_path}")
    errors = result["concurrency_1"]["errors"] + sum(r["errors"] for r in result.get("curve", []))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
