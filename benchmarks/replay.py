"""Replay: what freshness buys. Train up to a cut day, then walk forward one day at a time and
score the NEXT day's interactions for four systems:

  (a) static          the export trained at the cut, nothing else changes
  (b) +events         the same models; at each day start the previous day's interactions go in as
                      events (the real InteractionService: Parquet log + Feast push) and the items
                      released by the end of the day are added (`items upsert`: item-tower
                      embeddings in the index extension, a new snapshot)
  (c) +warm retrain   (b) + every day a warm-start retrain (`cascade retrain`) on the log
  (d) +full retrain   (b) + every day a from-scratch retrain on everything

    python benchmarks/replay.py --data build/data/drift --days 5
    python benchmarks/replay.py --data build/data/ml-100k --days 5 --name ml-100k

Scored users on day d: users with at least one interaction that day with an item they had not
interacted with before the day (seeded sample of at most --max-users, the same for every system);
targets: those items. recall@100 = |top-100 ∩ targets| / |targets|, NDCG@10 binary; means over
users. Everything runs in process on the exports (the same stage classes Triton runs,
InProcessRecommender); training settings are fixed in advance (SMALL, below) and nothing is tuned
on the scored days (early stopping only sees data before each day's start).

Writes benchmarks/results/replay-<name>.json and docs/replay-<name>.png and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

DAY = 86_400
SYSTEMS = ("static", "events", "warm", "full")
LABELS = {"static": "(a) static", "events": "(b) +events", "warm": "(c) +warm retrain", "full": "(d) +full retrain"}


def train_config():
    """SMALL: fixed before any replay (not tuned on scored days)."""
    from cascade.workflows.artifacts import TrainConfig
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig

    return TrainConfig(retrieval=RetrievalTrainConfig(epochs=2, examples_per_epoch=30_000, progress=False),
                       ranking=RankingTrainConfig(epochs=1, progress=False))


def all_interactions(data: Path) -> pd.DataFrame:
    cols = ["user_id", "item_id", "timestamp", "weight"]
    frame = pd.concat([pd.read_parquet(data / f, columns=cols) for f in ("train.parquet", "test.parquet")])
    return frame.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)


def base_dataset(data: Path, events: pd.DataFrame, cut: int, out: Path, name: str) -> None:
    """Canonical dataset of everything before ``cut``: train = interactions < cut, test empty,
    users who interacted before the cut, items released (first_seen) or interacted before it."""
    from cascade.workflows.dataset import DatasetInfo, DatasetWriter, interaction_schema

    info = DatasetInfo.load(data)
    before = events[events.timestamp < cut].sort_values(["user_id", "timestamp"], kind="stable")
    users = pq.read_table(data / "users.parquet")
    users = users.filter(pa.array(np.isin(users.column("user_id").to_numpy(), before.user_id.unique())))
    items = pq.read_table(data / "items.parquet")
    ids = items.column("item_id").to_numpy()
    released = np.isin(ids, before.item_id.unique())
    if "first_seen" in items.column_names:
        released |= items.column("first_seen").to_numpy(zero_copy_only=False) < cut
    items = items.filter(pa.array(released))
    with DatasetWriter(out) as writer:
        pq.write_table(users, writer.paths.users)
        pq.write_table(items, writer.paths.items)
        pq.write_table(pa.Table.from_pandas(before.reset_index(drop=True), schema=interaction_schema(),
                                            preserve_index=False), writer.paths.train)
        pq.write_table(interaction_schema().empty_table(), writer.paths.test)
        writer.commit(info.model_copy(update={
            "name": name, "n_users": users.num_rows, "n_items": items.num_rows, "n_train": len(before), "n_test": 0,
            "test_fraction": 0.0, "time_range": (int(before.timestamp.min()), int(before.timestamp.max())),
            "has_oracle": False}))


def new_items_table(data: Path, catalog_ids: set[int], until: int, events: pd.DataFrame) -> pd.DataFrame:
    """Items released before ``until`` (first_seen, or first interaction) that the catalog lacks."""
    items = pd.read_parquet(data / "items.parquet")
    first = items.item_id.map(events.groupby("item_id").timestamp.min()).astype("float64")
    # the earlier of the catalog's release time and the first interaction (MovieLens' first_seen is
    # the first TRAIN rating: a test-split rating can come first, and its event must name a known item)
    release = np.fmin(items["first_seen"].astype("float64"), first) if "first_seen" in items else first
    release = release.fillna(np.iinfo(np.int64).max)
    mask = (release < until) & ~items.item_id.isin(catalog_ids)
    return items[mask]


def upsert_released(export: Path, data: Path, until: int, events: pd.DataFrame, work: Path) -> int:
    from cascade.events.items import upsert_items
    from cascade.features.repo import ITEM_SOURCE

    catalog = set(pq.read_table(export / "feature_repo" / ITEM_SOURCE, columns=["item_id"]).column("item_id").to_pylist())
    new = new_items_table(data, catalog, until, events)
    if new.empty:
        return 0
    source = pq.read_schema(export / "feature_repo" / ITEM_SOURCE).names
    new = new[[c for c in new.columns if c in source]]
    path = work / "upsert.parquet"
    new.to_parquet(path, index=False)
    upsert_items(export, path)
    return len(new)


def push_events(service, day_events: pd.DataFrame) -> int:
    accepted = 0
    for user, group in day_events.groupby("user_id", sort=False):
        result = service.ingest({
            "user_id": np.array([user], np.int64), "item_ids": group.item_id.to_numpy(np.int64),
            "timestamps": group.timestamp.to_numpy(np.int64), "weights": group.weight.to_numpy(np.float32)})
        accepted += result.accepted
    return accepted


def score(export: Path, users: list[int], targets: dict[int, set[int]], new_items: set[int]) -> dict:
    from cascade.online.export_layout import ExportLayout
    from cascade.online.pipeline import InProcessRecommender

    rec = InProcessRecommender(ExportLayout(export))
    recalls, ndcgs, new_in_lists = [], [], []
    discounts = 1.0 / np.log2(np.arange(2, 12))
    for user in users:
        items = rec.recommend(user, top_k=100).item_ids.tolist()
        truth = targets[user]
        recalls.append(len(truth & set(items)) / len(truth))
        gains = np.array([1.0 if i in truth else 0.0 for i in items[:10]])
        ideal = discounts[:min(len(truth), 10)].sum()
        ndcgs.append(float((gains * discounts[:len(gains)]).sum() / ideal))
        new_in_lists.append(sum(1 for i in items if i in new_items))
    return {"recall@100": float(np.mean(recalls)), "ndcg@10": float(np.mean(ndcgs)),
            "new_items_per_top100": float(np.mean(new_in_lists))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--days", type=int, default=5, help="replay steps")
    parser.add_argument("--step-days", type=int, default=1,
                        help="days per replay step (MovieLens-100k's last days hold ~10 active users each: use 7)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--max-users", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-epochs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()

    from cascade.events.retrain import RetrainConfig, retrain
    from cascade.events.service import InteractionService
    from cascade.workflows.artifacts import train_all
    from cascade.workflows.export import export_repository

    systems = [s for s in args.systems.split(",") if s]
    name = args.name or args.data.name
    work = (args.work or ROOT / "build" / "replay" / name).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    events = all_interactions(args.data)
    end = int(events.timestamp.max()) + 1
    step = args.step_days * DAY
    cut = end - args.days * step
    print(f"{name}: {len(events)} interactions, cut {cut} ({args.days} replay steps of {args.step_days} day(s))")
    base = work / "base-data"
    base_dataset(args.data, events, cut, base, f"{name}-cut")
    t = time.perf_counter()
    layout, _, _ = train_all(base, work / "base-artifacts", train_config(), progress=False, force=True, log=lambda _: None)
    base_train_s = time.perf_counter() - t
    e0 = export_repository(base, work / "export-static", artifacts_dir=layout.root, force=True).root
    exports = {"static": e0}
    for system in systems:
        if system != "static":
            exports[system] = work / f"export-{system}-0"
            shutil.copytree(e0, exports[system], symlinks=True)
    log_dir = work / "interaction_log"
    service = InteractionService(exports["events"] / "feature_repo", log_dir) if "events" in systems else None
    base_items = set(pq.read_table(base / "items.parquet", columns=["item_id"]).column("item_id").to_pylist())
    rng = np.random.default_rng(args.seed)
    rows, timings = [], []
    for day in range(args.days):
        start, stop = cut + day * step, cut + (day + 1) * step
        past = events[events.timestamp < start]
        today = events[(events.timestamp >= start) & (events.timestamp < stop)]
        seen = past.groupby("user_id").item_id.agg(set).to_dict()
        targets: dict[int, set[int]] = {}
        for user, group in today.groupby("user_id"):
            fresh = set(group.item_id.tolist()) - seen.get(user, set())
            if fresh:
                targets[int(user)] = fresh
        users = sorted(targets)
        if len(users) > args.max_users:
            users = sorted(rng.choice(users, size=args.max_users, replace=False).tolist())
        if not users:
            continue
        day_timing = {"day": day + 1}
        if day > 0:  # yesterday's interactions become events, for every system but (a)
            yesterday = events[(events.timestamp >= start - step) & (events.timestamp < start)]
            if service is not None:
                t = time.perf_counter()
                push_events(service, yesterday)
                day_timing["push_s"] = round(time.perf_counter() - t, 2)
            for system, full in (("warm", False), ("full", True)):
                if system not in systems:
                    continue
                t = time.perf_counter()
                result = retrain(exports[system], str(log_dir), work / f"export-{system}-{day}", full=full, until=start,
                                 config=RetrainConfig(warm_epochs=args.warm_epochs, train=train_config()))
                day_timing[f"{system}_retrain_s"] = round(time.perf_counter() - t, 1)
                exports[system] = result.export_root
        for system in systems:
            if system != "static":
                n = upsert_released(exports[system], args.data, stop, events, work)
                day_timing[f"{system}_new_items"] = n
        new_items = set(events.item_id.unique().tolist()) - base_items
        for system in systems:
            metrics = score(exports[system], users, targets, new_items)
            rows.append({"day": day + 1, "system": system, "users": len(users), **metrics})
            print(f"day {day + 1} {LABELS[system]:<20} users {len(users):4d}  recall@100 {metrics['recall@100']:.4f}  "
                  f"ndcg@10 {metrics['ndcg@10']:.4f}  new items/top100 {metrics['new_items_per_top100']:.2f}", flush=True)
        timings.append(day_timing)
    table = pd.DataFrame(rows)
    summary = table.groupby("system")[["recall@100", "ndcg@10", "new_items_per_top100"]].mean().reindex(systems)
    result = {"benchmark": "replay", "data": str(args.data), "name": name, "days": args.days,
              "step_days": args.step_days, "cut": cut,
              "max_users": args.max_users, "seed": args.seed, "warm_epochs": args.warm_epochs,
              "base_train_s": round(base_train_s, 1), "train_config": train_config().to_dict(),
              "per_day": rows, "mean": summary.reset_index().to_dict(orient="records"), "timings": timings,
              "note": "small settings (SMALL train config, <= max_users scored per day); shared 2-core box: "
                      "wall times are noisy"}
    out = ROOT / "benchmarks" / "results" / f"replay-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(table, systems, ROOT / "docs" / f"replay-{name}.png", name)
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print(json.dumps(timings))
    print(f"wrote {out}")


def plot(table: pd.DataFrame, systems: list[str], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for metric, ax in zip(("recall@100", "ndcg@10"), axes):
        for system in systems:
            part = table[table.system == system]
            ax.plot(part.day, part[metric], marker="o", label=LABELS[system])
        ax.set_xlabel("replay day")
        ax.set_title(f"{name}: next-day {metric}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
