"""Retrieval-stage cost of multi-source candidates: ``RetrievalStage.retrieve_sources`` with the
export's item-to-item neighbours vs the same stage without them (ANN + popular only), interleaved
in one run over the same users, so the ratio holds on a noisy shared box.

    python benchmarks/bench_candidates.py --export EXPORT --data DIR [--users 300] [--rounds 5] \
        [--baseline-ref GIT_REF] [--out benchmarks/results/candidates-<name>.json]

``--baseline-ref`` adds the variant ``export_mix@REF``: the same stage with ``CandidateSources`` from
``cascade/online/candidates.py`` as it was at that git commit (an A/B of a change to the merge code,
same neighbours, mix and users; its lists are checked equal to the current code's).

Prints per-variant median/p90 microseconds per call and the ratio; writes the JSON."""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np


def module_at(ref: str):
    """``cascade.online.candidates`` as it was at git commit ``ref`` (loaded as its own module)."""
    import importlib.util
    import subprocess
    import sys
    import tempfile

    source = subprocess.run(["git", "show", f"{ref}:cascade/online/candidates.py"], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent).stdout
    path = Path(tempfile.mkdtemp()) / "candidates_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("candidates_at_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    from cascade.online.candidates import CandidateSources, SourceMix
    from cascade.online.pipeline import InProcessRecommender

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the dataset the export was built from")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-ref", default=None, help="git commit whose candidates.py to time beside")
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
    if args.baseline_ref:
        old = copy.copy(with_sources)
        old.sources = module_at(args.baseline_ref).CandidateSources(
            with_sources.sources.n_candidates, with_sources.popular_rows, with_sources.sources.neighbours,
            with_sources.sources.mix)
        variants[f"export_mix@{args.baseline_ref}"] = old
    rng = np.random.default_rng(args.seed)
    import pandas as pd

    train_users = np.unique(pd.read_parquet(args.data / "train.parquet", columns=["user_id"])["user_id"].to_numpy())
    picked = np.sort(rng.choice(train_users, size=min(args.users, len(train_users)), replace=False))
    users = rec.user.lookup_many(picked.tolist())
    queries = rec.query.query_many([(u.cat, u.cont, u.lists) for u in users])
    empty = np.empty(0, np.int64)
    if args.baseline_ref:  # an A/B of the merge code is only meaningful if both give the same lists
        for user, query in zip(users, queries):
            a, b = (variants[name].retrieve_sources(query, user.cold_start, user.seen_items, empty, user.recent_items)
                    for name in ("export_mix", f"export_mix@{args.baseline_ref}"))
            if not all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("rows", "source", "item2item_score")):
                raise SystemExit(f"user {user}: the lists differ from {args.baseline_ref}'s")
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
