"""Benchmark the Feast paths of the hot path: live user lookup and the item snapshot gather.

    .venv/bin/python benchmarks/bench_feast.py [--data DIR] [--users 20000 --items 10000 --interactions 500000]

Without ``--data`` it writes a synthetic canonical dataset of the given size into a temp folder
(uniform-random interactions: only sizes matter here). It generates + applies + materializes a
feature repo (SQLite online store) and measures, single-threaded:

- ``UserFeatureReader.get`` for 1 user and ``get_many`` for 100 users (known users, random),
- the raw ``FeatureStore.get_online_features`` call for 1 user (what the reader wraps),
- ``ItemSnapshot.gather`` of 300 random catalog rows and ``rows_for`` of 300 raw ids.

Writes ``benchmarks/results/feast.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results" / "feast.json"


def synthetic_dataset(target: Path, n_users: int, n_items: int, n_interactions: int, seed: int = 0) -> None:
    from cascade.workflows.dataset import ColumnInfo, DatasetInfo, DatasetWriter

    rng = np.random.default_rng(seed)
    users = pa.table({
        "user_id": np.arange(1, n_users + 1, dtype=np.int64),
        "age_bucket": pa.array(rng.choice(["18-24", "25-34", "35-44", "45+"], n_users)),
        "country": pa.array(rng.choice(["DE", "US", "FR", "BR", "IN"], n_users)),
        "activity": rng.random(n_users),
    })
    items = pa.table({
        "item_id": rng.permutation(np.arange(100, 100 + n_items, dtype=np.int64)),
        "category": pa.array([f"c{i}" for i in rng.integers(0, 50, n_items)]),
        "brand": pa.array([f"b{i}" for i in rng.integers(0, 500, n_items)]),
        "price": rng.gamma(2.0, 10.0, n_items),
        "first_seen": rng.integers(1_600_000_000, 1_700_000_000, n_items),
        "available": rng.random(n_items) > 0.05,
    })
    train = pd.DataFrame({
        "user_id": np.sort(rng.integers(1, n_users + 1, n_interactions)),
        "item_id": items.column("item_id").to_numpy()[rng.zipf(1.3, n_interactions) % n_items],
        "timestamp": np.arange(n_interactions, dtype=np.int64) + 1_700_000_000,
    })
    train["weight"] = np.float32(1.0)
    with DatasetWriter(target) as writer:
        pq.write_table(users, writer.paths.users)
        pq.write_table(items, writer.paths.items)
        train.to_parquet(writer.paths.train, index=False)
        train.iloc[:0].to_parquet(writer.paths.test, index=False)
        col = ColumnInfo
        writer.commit(DatasetInfo(
            name="bench", source="synthetic", n_users=n_users, n_items=n_items, n_train=n_interactions,
            n_test=0, test_fraction=0.0,
            time_range=(int(train.timestamp.min()), int(train.timestamp.max())),
            user_columns=[col(name="user_id", kind="id", dtype="int64"),
                          col(name="age_bucket", kind="categorical", dtype="string"),
                          col(name="country", kind="categorical", dtype="string"),
                          col(name="activity", kind="continuous", dtype="double")],
            item_columns=[col(name="item_id", kind="id", dtype="int64"),
                          col(name="category", kind="categorical", dtype="string"),
                          col(name="brand", kind="categorical", dtype="string"),
                          col(name="price", kind="continuous", dtype="double"),
                          col(name="first_seen", kind="timestamp", dtype="int64"),
                          col(name="available", kind="flag", dtype="bool")],
        ))


def timed(fn, args_list: list, warmup: int = 20) -> dict[str, float]:
    for args in args_list[:warmup]:
        fn(*args)
    samples = np.empty(len(args_list))
    for i, args in enumerate(args_list):
        start = time.perf_counter_ns()
        fn(*args)
        samples[i] = time.perf_counter_ns() - start
    us = samples / 1e3
    return {"n": len(us), "p50_us": round(float(np.percentile(us, 50)), 1),
            "p99_us": round(float(np.percentile(us, 99)), 1), "mean_us": round(float(us.mean()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="existing canonical dataset folder")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=500_000)
    parser.add_argument("--iterations", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from cascade.features.online import UserFeatureReader
    from cascade.features.repo import generate_feature_repo
    from cascade.features.snapshot import ItemSnapshot
    from cascade.features.store import materialize

    work = Path(tempfile.mkdtemp(prefix="bench-feast-"))
    data = args.data
    t0 = time.perf_counter()
    if data is None:
        data = work / "data"
        synthetic_dataset(data, args.users, args.items, args.interactions)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    repo = generate_feature_repo(data, work / "repo")
    t_generate = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = materialize(repo.root)  # applies first
    t_materialize = time.perf_counter() - t0

    rng = np.random.default_rng(1)
    user_ids = pq.read_table(Path(data) / "users.parquet", columns=["user_id"]).column(0).to_numpy()
    reader = UserFeatureReader(repo.root)
    n = args.iterations
    one = [(int(u),) for u in rng.choice(user_ids, n)]
    hundred = [([int(u) for u in rng.choice(user_ids, 100)],) for _ in range(max(n // 10, 50))]
    refs = [f"user_features:{name}" for name in reader.feature_names]

    def raw(uid: int) -> None:
        reader.store.get_online_features(features=refs, entity_rows=[{"user_id": uid}]).to_dict()

    snapshot = ItemSnapshot.load_latest(repo.root)
    rows = [(rng.integers(0, len(snapshot), 300),) for _ in range(n * 2)]
    ids = [(snapshot.item_ids[r[0]],) for r in rows]
    hist = reader.get_many([int(u) for u in user_ids[:2000]]).columns["recent_items"]
    report = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpus": os.cpu_count()},
        "dataset": {"users": repo.n_users, "items": repo.n_items,
                    "mean_recent_items": float(np.mean([len(h) for h in hist]))},
        "setup_s": {"dataset": round(t_data, 2), "generate": round(t_generate, 2),
                    "apply_and_materialize": round(t_materialize, 2)},
        "materialized_rows": result.rows,
        "user_get_1": timed(reader.get, one),
        "raw_get_online_features_1": timed(raw, one),
        "user_get_many_100": timed(reader.get_many, hundred, warmup=5),
        "snapshot_gather_300": timed(snapshot.gather, rows),
        "snapshot_rows_for_300": timed(snapshot.rows_for, ids),
    }
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
