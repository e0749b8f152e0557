"""Train the DLRM ranker on positives and sampled negatives: uniform-random, popularity-sampled,
and hard negatives drawn from the retrieval model's top candidates for the same (leave-future-out)
query, excluding the positive and every item the user has in train. The frozen two-tower model is
part of the ranker (its query . item score is an input), so ranking sees retrieval's opinion.
Early stopping on validation recall@10 after re-ranking retrieval's top candidates."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cascade.errors import NotFoundError
from cascade.models.dlrm import DLRMConfig
from cascade.models.features import FeatureSpec
from cascade.workflows.train_retrieval import embed, history_rows, seed_everything, to_torch
from cascade.workflows.training_data import Catalog, Examples, TrainingData, user_segments


@dataclass
class RankingTrainConfig:
    epochs: int = 3
    batch_size: int = 4096
    lr: float = 2e-3
    weight_decay: float = 1e-6
    patience: int = 1
    seed: int = 0
    threads: int = 2
    positives_per_user: int = 5       # fallback positives (latest retrieval rows) when no held-out rows
    n_hard: int = 3
    n_random: int = 1
    n_popular: int = 1
    min_steps_per_epoch: int = 40
    hard_pool: int = 300              # hard negatives from retrieval's top-``hard_pool`` (= serving candidates)
    n_candidates: int = 300           # validation: re-rank retrieval's top-N
    eval_k: int = 10
    eval_examples: int = 4000
    progress: bool = True
    model: DLRMConfig = field(default_factory=DLRMConfig)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["model"] = self.model.to_dict()
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "RankingTrainConfig":
        payload = dict(payload)
        payload["model"] = DLRMConfig.from_dict(payload.get("model", {}))
        return cls(**payload)


@dataclass
class RankingResult:
    model: Any
    epochs: list[dict[str, float]]
    best_epoch: int
    best_recall: float
    retrieval_recall: float
    seconds: float
    n_positives: int
    n_rows: int


class SeenSet:
    """Membership of (user, catalog row) pairs in the train interactions, vectorised."""

    def __init__(self, user_ids: np.ndarray, item_rows: np.ndarray, n_items: int) -> None:
        self.users = np.unique(user_ids)
        self.n_items = n_items
        self.keys = np.unique(self._key(user_ids, item_rows))

    def _key(self, user_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.users, user_ids).astype(np.int64) * self.n_items + rows

    def contains(self, user_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        keys = self._key(user_ids, rows)
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return self.keys[pos] == keys


def recent_positive_rows(users: np.ndarray, per_user: int) -> np.ndarray:
    """Indices of the last ``per_user`` rows of each user in a user-sorted array."""
    starts, ends = user_segments(users)
    from_end = np.repeat(ends, ends - starts) - 1 - np.arange(len(users))
    return np.flatnonzero(from_end < per_user)


def top_candidates(q: np.ndarray, v: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """[n, k] catalog rows by retrieval score (best first), ``exclude`` rows (-1 = none) masked."""
    k = min(k, v.shape[0])
    out = np.empty((len(q), k), np.int64)
    for lo in range(0, len(q), 4096):
        s = q[lo:lo + 4096] @ v.T
        ex = exclude[lo:lo + 4096]
        r, c = np.nonzero(ex >= 0)
        s[r, ex[r, c]] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
        out[lo:lo + 4096] = np.take_along_axis(top, order, axis=1)
    return out


def sample_negatives(
    rng: np.random.Generator, examples: Examples, catalog: Catalog, seen: SeenSet, hard: np.ndarray,
    config: RankingTrainConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(example index, catalog row, label) rows: positives + hard/random/popular negatives; negatives
    that the user has in train (or equal the positive) are dropped."""
    n, n_items = len(examples), len(catalog.item_ids)
    parts_ex = [np.arange(n)]
    parts_item = [examples.item_rows]
    parts_label = [np.ones(n, np.float32)]
    if config.n_hard and hard.shape[1]:
        cols = rng.integers(0, hard.shape[1], size=(n, config.n_hard))
        parts_ex.append(np.repeat(np.arange(n), config.n_hard))
        parts_item.append(np.take_along_axis(hard, cols, axis=1).reshape(-1))
    if config.n_random:
        parts_ex.append(np.repeat(np.arange(n), config.n_random))
        parts_item.append(rng.integers(0, n_items, size=n * config.n_random))
    if config.n_popular:
        p = catalog.popularity.astype(np.float64) + 1.0
        parts_ex.append(np.repeat(np.arange(n), config.n_popular))
        parts_item.append(rng.choice(n_items, size=n * config.n_popular, p=p / p.sum()))
    for extra in parts_ex[1:]:
        parts_label.append(np.zeros(len(extra), np.float32))
    ex = np.concatenate(parts_ex)
    item = np.concatenate(parts_item).astype(np.int64)
    label = np.concatenate(parts_label)
    negative = label == 0
    bad = negative & (seen.contains(examples.user_ids[ex], item) | (item == examples.item_rows[ex]))
    keep = ~bad
    return ex[keep], item[keep], label[keep]


def rerank_recall(
    model: Any, examples: Examples, catalog: Catalog, q: np.ndarray, v: np.ndarray, candidates: np.ndarray, k: int,
) -> tuple[float, float]:
    """(recall@k after DLRM re-ranking, recall@k of retrieval order) on ``examples``."""
    import torch

    n, c = candidates.shape
    retrieval_hits = (candidates[:, :k] == examples.item_rows[:, None]).any(axis=1).mean()
    scores = np.empty((n, c), np.float32)
    chunk = max(1, 32768 // c)
    model.eval()
    with torch.no_grad():
        for lo in range(0, n, chunk):
            rows = np.arange(lo, min(n, lo + chunk))
            ex = np.repeat(rows, c)
            items = candidates[rows].reshape(-1)
            feats = {**to_torch(examples.features, ex), **to_torch(catalog.features, items)}
            s = model(feats, query=torch.from_numpy(q[ex]), item=torch.from_numpy(v[items]))
            scores[rows] = s.numpy().reshape(len(rows), c)
    top = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
    return float((top == examples.item_rows[:, None]).any(axis=1).mean()), float(retrieval_hits)


def train_dlrm(data: TrainingData, two_tower: Any, config: RankingTrainConfig | None = None) -> RankingResult:
    import torch
    from tqdm.auto import tqdm

    from cascade.models.dlrm import DLRM

    config = config or RankingTrainConfig()
    seed_everything(config.seed, config.threads)
    rng = np.random.default_rng(config.seed + 1)
    started = time.perf_counter()
    two_tower.eval()
    model = DLRM(data.specs, config.model, two_tower=two_tower)
    catalog = data.catalog
    if data.rank is not None and len(data.rank):
        positives = data.rank  # held out from retrieval training: unbiased retrieval scores
    else:
        positives = data.train.subset(recent_positive_rows(data.train.user_ids, config.positives_per_user))
    v = embed(two_tower.item, catalog.features)
    q = embed(two_tower.query, positives.features)
    hard = top_candidates(q, v, history_rows(catalog, positives.history), config.hard_pool)
    seen = SeenSet(
        np.concatenate([data.train.user_ids, data.val.user_ids] + ([data.rank.user_ids] if data.rank is not None else [])),
        np.concatenate([data.train.item_rows, data.val.item_rows] + ([data.rank.item_rows] if data.rank is not None else [])),
        len(catalog.item_ids),
    )
    val = data.val
    if len(val) > config.eval_examples:
        val = val.subset(np.sort(rng.choice(len(val), config.eval_examples, replace=False)))
    val_q = embed(two_tower.query, val.features)
    val_candidates = top_candidates(val_q, v, history_rows(catalog, val.history), config.n_candidates)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history: list[dict[str, float]] = []
    best, best_epoch, best_state, bad, retrieval_recall = -1.0, 0, None, 0, 0.0
    n_rows = 0
    for epoch in range(1, config.epochs + 1):
        ex, items, labels = sample_negatives(rng, positives, catalog, seen, hard, config)
        n_rows = len(ex)
        order = rng.permutation(len(ex))
        batch_size = max(64, min(config.batch_size, len(ex) // config.min_steps_per_epoch))
        steps = (len(ex) + batch_size - 1) // batch_size
        model.train()
        running = 0.0
        bar = tqdm(range(steps), desc=f"ranking epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False)
        for step in bar:
            b = order[step * batch_size:(step + 1) * batch_size]
            e, it = ex[b], items[b]
            feats = {**to_torch(positives.features, e), **to_torch(catalog.features, it)}
            logits = model(feats, query=torch.from_numpy(q[e]), item=torch.from_numpy(v[it]))
            loss = loss_fn(logits, torch.from_numpy(labels[b]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = 0.95 * running + 0.05 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.4f}")
        bar.close()
        recall, retrieval_recall = rerank_recall(model, val, catalog, val_q, v, val_candidates, config.eval_k)
        history.append({"epoch": epoch, "loss": running, f"val_recall@{config.eval_k}": recall,
                        f"val_retrieval_recall@{config.eval_k}": retrieval_recall})
        if config.progress:
            print(f"ranking epoch {epoch}: loss {running:.4f}  val recall@{config.eval_k} reranked {recall:.4f} "
                  f"(retrieval order {retrieval_recall:.4f})")
        if recall > best:
            best, best_epoch, bad = recall, epoch, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            if bad > config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return RankingResult(model, history, best_epoch, best, retrieval_recall, time.perf_counter() - started,
                         len(positives), n_rows)


def save_ranking(result: RankingResult, config: RankingTrainConfig, out_dir: Path) -> dict[str, Any]:
    import torch

    from cascade.workflows.onnx_export import export_dlrm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = result.model
    export_dlrm(model, out_dir)
    torch.save({k: t for k, t in model.state_dict().items() if not k.startswith("two_tower.")}, out_dir / "model.pt")
    meta = {
        "model": "dlrm",
        "config": config.to_dict(),
        "specs": [s.to_dict() for s in model.specs],
        "inputs": [s.name for s in model.specs],
        "outputs": {"dlrm.onnx": "score"},
        "score": "logit",
        "uses_retrieval_score": model.two_tower is not None,
        "training": {
            "epochs": result.epochs, "best_epoch": result.best_epoch,
            f"val_recall@{config.eval_k}": result.best_recall,
            f"val_retrieval_recall@{config.eval_k}": result.retrieval_recall,
            "seconds": round(result.seconds, 1), "n_positives": result.n_positives, "n_rows_per_epoch": result.n_rows,
        },
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_dlrm(ranking_dir: Path, two_tower: Any | None) -> Any:
    import torch

    from cascade.models.dlrm import DLRM

    ranking_dir = Path(ranking_dir)
    if not (ranking_dir / "meta.json").is_file() or not (ranking_dir / "model.pt").is_file():
        raise NotFoundError(f"{ranking_dir} holds no trained ranking model (run `cascade train ranking`)")
    meta = json.loads((ranking_dir / "meta.json").read_text())
    specs = [FeatureSpec.from_dict(s) for s in meta["specs"]]
    model = DLRM(specs, DLRMConfig.from_dict(meta["config"]["model"]), two_tower=two_tower)
    model.load_state_dict(torch.load(ranking_dir / "model.pt", weights_only=True), strict=False)
    model.eval()
    return model
