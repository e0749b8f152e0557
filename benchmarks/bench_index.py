"""Benchmark the ANN index on a random catalog (default 1M items x 64 dims, unit norm):
build time, query latency and recall@100 of HNSW vs exact IndexFlatIP. Bounded: exact ground
truth is computed for ``--queries`` queries only.

    .venv/bin/python benchmarks/bench_index.py --items 1000000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="FAISS threads (0 = all)")
    args = parser.parse_args()

    import faiss

    from cascade.workflows.index import IndexConfig, build_index, sample_queries

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.items, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = sample_queries(x, args.queries, args.seed + 1)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    t = time.perf_counter()
    _, truth = exact.search(q, 100)
    exact_ms = (time.perf_counter() - t) * 1000 / len(q)
    t = time.perf_counter()
    index = build_index(x, IndexConfig(kind="hnsw", hnsw_m=args.m, ef_construction=args.ef_construction,
                                       deterministic=False))
    build_s = time.perf_counter() - t
    results = {"items": args.items, "dim": args.dim, "queries": len(q), "hnsw_m": args.m,
               "ef_construction": args.ef_construction, "build_s": round(build_s, 1),
               "exact_ms_per_query_batched": round(exact_ms, 3), "threads": faiss.omp_get_max_threads(), "runs": []}
    for ef in args.ef_search:
        index.hnsw.efSearch = ef
        t = time.perf_counter()
        _, found = index.search(q, 100)
        ms = (time.perf_counter() - t) * 1000 / len(q)
        recall = float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(truth, found)]) / 100)
        results["runs"].append({"ef_search": ef, "recall@100": round(recall, 4), "ms_per_query_batched": round(ms, 3)})
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
