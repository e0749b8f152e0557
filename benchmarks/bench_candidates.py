"""Retrieval-stage cost of multi-source candidates: ``RetrievalStage.retrieve_sources`` with the
export's item-to-item neighbours vs the same stage without them (ANN + popular only), interleaved
in one run over the same users, so the ratio holds on a noisy shared box.

    python benchmarks/bench_candidates.py --export EXPORT --data DIR [--users 300] [--rounds 5] \
        [--out benchmarks/results/candidates-<name>.json]

Prints per-variant median/p90 microseconds per call and the ratio; writes the JSON."""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from cascade.online.candidates import CandidateSources, SourceMix
    from cascade.online.pipeline import InProcessRecommender

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the dataset the export was built from")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rec = InProcessRecommender.load(args.export)
    with_sources = rec.retrieval
    if with_sources.sources.neighbours is None:
        raise SystemExit(f"{args.export} has no artifacts/candidates: nothing to compare")
    ann_only = copy.copy(with_sources)
    ann_only.sources = CandidateSources(with_sources.sources.n_candidates, with_sources.popular_rows, None,
                                        SourceMix(item2item=0.0, popular=with_sources.sources.mix.popular,
                                                  short_history=with_sources.sources.mix.short_history))
    # a share > 0 so the item-to-item list is built and merged even where training picked 0
    forced = copy.copy(with_sources)
    forced.sources = CandidateSources(with_sources.sources.n_candidates, with_sources.popular_rows,
                                      with_sources.sources.neighbours,
                                      SourceMix(item2item=0.5, popular=with_sources.sources.mix.popular,
                                                short_history=with_sources.sources.mix.short_history))
    variants = {"ann_only": ann_only, "export_mix": with_sources, "item2item_0.5": forced}
    rng = np.random.default_rng(args.seed)
    import pandas as pd

    train_users = np.unique(pd.read_parquet(args.data / "train.parquet", columns=["user_id"])["user_id"].to_numpy())
    picked = np.sort(rng.choice(train_users, size=min(args.users, len(train_users)), replace=False))
    users = rec.user.lookup_many(picked.tolist())
    queries = rec.query.query_many([(u.cat, u.cont, u.lists) for u in users])
    empty = np.empty(0, np.int64)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in rng.permutation(list(variants)):
            stage = variants[name]
            for user, query in zip(users, queries):
                t0 = time.perf_counter()
                stage.retrieve_sources(query, user.cold_start, user.seen_items, empty, user.recent_items)
                times[name].append((time.perf_counter() - t0) * 1e6)
    result = {
        "export": str(args.export), "users": len(users), "rounds": args.rounds,
        "n_candidates": with_sources.sources.n_candidates, "export_mix": with_sources.sources.mix.to_dict(),
        "note": "shared 2-core box under heavy load: compare the ratios, not the absolute numbers",
        "us_per_call": {name: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))}
                        for name, v in times.items()},
    }
    base = result["us_per_call"]["ann_only"]["median"]
    result["median_ratio_vs_ann_only"] = {name: round(v["median"] / base, 3) for name, v in result["us_per_call"].items()}
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
