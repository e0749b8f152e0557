"""Issue 4's index target, measured on a trained model: retrieval recall@100 (and NDCG@10) on the
temporal test split with the approximate index vs exact inner-product search over the SAME item
embeddings, through the served retrieval stage (``InProcessRecommender.recommend_many(stage=
"retrieval")`` over an export). Prints the table and writes benchmarks/results/index-quality-<name>.json.

    python benchmarks/bench_index_quality.py --export DIR --data DIR [--max-users 5000]

When the artifact's index is already exact (catalogs <= 100k items), an HNSW index with the default
IndexConfig (the one `cascade train` builds above the threshold) is built over the embeddings, so
the comparison is the same on any catalog size.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import faiss

    import numpy as np

    from cascade.online.pipeline import InProcessRecommender
    from cascade.workflows.evaluate import evaluate
    from cascade.workflows.evaluate_methods import PipelineMethod

    from cascade.workflows.index import IndexConfig, build_index, tune_nprobe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True, help="cascade export of --data")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--max-users", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    parser.add_argument("--rebuild", choices=("ivf", "hnsw"), default=None,
                        help="compare a freshly built index of this kind (default IndexConfig; IVF nprobe tuned on "
                             "user-tower queries) instead of the artifact's own")
    args = parser.parse_args()

    pipeline = InProcessRecommender.load(args.export)
    index = pipeline.retrieval.index
    vectors = index.reconstruct_n(0, index.ntotal)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    approximate = index if not isinstance(index, faiss.IndexFlat) and args.rebuild is None else None
    built_s = 0.0
    tuning: list = []
    if approximate is None:
        kind = args.rebuild or "hnsw"
        config = IndexConfig(kind=kind)
        started = time.perf_counter()
        approximate = build_index(vectors, config)
        if kind == "ivf":
            import pandas as pd

            users = pd.read_parquet(Path(args.data) / "train.parquet", columns=["user_id"])["user_id"].unique()
            sample = np.random.default_rng(args.seed + 1).choice(users, size=min(1000, len(users)), replace=False)
            encoded = pipeline.user.lookup_many(sample.tolist())
            queries = np.concatenate(pipeline.query.query_many([(u.cat, u.cont, u.lists) for u in encoded]))
            tuning = tune_nprobe(approximate, vectors, np.ascontiguousarray(queries, dtype=np.float32), config)
        built_s = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
    ef_search = int(approximate.hnsw.efSearch) if hasattr(approximate, "hnsw") else None
    nprobe = int(approximate.nprobe) if hasattr(approximate, "nprobe") else None
    rows = {}
    for label, candidate in (("exact", exact), ("approximate", approximate)):
        pipeline.retrieval.index = candidate
        report = evaluate(args.data, [PipelineMethod(pipeline, "retrieval", label)], ks=(10, 100),
                          max_users=args.max_users, seed=args.seed, progress=False)
        rows[label] = dict(report.methods[0].metrics)
    recall_exact = rows["exact"]["recall@100"]
    recall_approx = rows["approximate"]["recall@100"]
    result = {
        "dataset": str(args.data), "export": str(args.export), "n_items": int(index.ntotal),
        "approximate_index": type(approximate).__name__, "ef_search": ef_search, "nprobe": nprobe, "nprobe_tuning": tuning, "build_s": built_s,
        "users_sampled": args.max_users, "seed": args.seed, "loadavg": os.getloadavg(),
        "exact": rows["exact"], "approximate": rows["approximate"],
        "recall@100_relative_gap": (recall_exact - recall_approx) / recall_exact if recall_exact else None,
    }
    name = args.name or Path(args.data).name
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"index-quality-{name}.json").write_text(json.dumps(result, indent=2, default=float))
    print(f"{'index':<14}{'recall@100':>12}{'ndcg@10':>10}")
    for label in ("exact", "approximate"):
        print(f"{label:<14}{rows[label]['recall@100']:>12.4f}{rows[label]['ndcg@10']:>10.4f}")
    print(f"relative recall@100 gap: {100 * result['recall@100_relative_gap']:.2f}% "
          f"({result['approximate_index']}, efSearch {ef_search}, nprobe {nprobe}, {result['n_items']} items)")


if __name__ == "__main__":
    main()
