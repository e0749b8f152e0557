"""How much the batched in-process pipeline saves evaluation: ``InProcessRecommender.recommend_many``
(chunks of users: one Feast read, one user-tower call, one gather + transform, one DLRM call) vs
``recommend`` per user, on the same users of an export, interleaved rounds (the box is shared, so
compare the ratio, not absolute numbers). Also lists the users whose two answers differ.

    .venv/bin/python benchmarks/bench_evaluate.py --export DIR --data DIR [--users 500 --rounds 3]

Writes benchmarks/results/evaluate-batching-<name>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import numpy as np
    import pandas as pd

    from cascade.online.pipeline import InProcessRecommender

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="dataset of the export (users are drawn from train)")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    rec = InProcessRecommender.load(args.export)
    known = pd.read_parquet(args.data / "train.parquet", columns=["user_id"])["user_id"].unique()
    users = np.random.default_rng(args.seed).choice(known, size=min(args.users, len(known)), replace=False)
    rec.recommend_many(users[:8], top_k=args.k, chunk=args.chunk)  # warm caches and ONNX sessions
    times: dict[str, list[float]] = {"per_user": [], "batched": []}
    differing: set[int] = set()
    for _ in range(args.rounds):  # interleaved: both variants see the same background load
        started = time.perf_counter()
        singles = [rec.recommend(int(u), top_k=args.k) for u in users]
        times["per_user"].append(time.perf_counter() - started)
        started = time.perf_counter()
        batched = rec.recommend_many(users, top_k=args.k, chunk=args.chunk)
        times["batched"].append(time.perf_counter() - started)
        differing |= {int(u) for u, a, b in zip(users, singles, batched) if a.item_ids.tolist() != b.item_ids.tolist()}
    best = {k: min(v) for k, v in times.items()}
    result = {
        "export": str(args.export), "users": len(users), "k": args.k, "chunk": args.chunk, "rounds": args.rounds,
        "seconds": times, "users_per_s_best": {k: len(users) / v for k, v in best.items()},
        "speedup_best": best["per_user"] / best["batched"],
        # a list can differ only where two scores tie to float32 noise: a DLRM call over a chunk of
        # users and one over a single user may round differently (~1e-6)
        "users_with_different_lists": sorted(differing),
        "loadavg": os.getloadavg(), "note": "shared 2-core box: compare the ratio, absolute numbers are noisy",
    }
    RESULTS.mkdir(exist_ok=True)
    name = args.name or Path(args.data).name
    path = RESULTS / f"evaluate-batching-{name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
