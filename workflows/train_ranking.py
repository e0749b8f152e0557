"""Train the DLRM ranker on the serving distribution: retrieval's candidate lists.

Default (``loss="listwise"``): one query per user, with the user's features *before* the ranking
window (interactions held out from retrieval training, so their retrieval scores are not inflated
by fitting) and every item of that window as a positive. Each list = the positives +
``list_negatives`` items drawn uniformly from the user's top-``hard_pool`` retrieval candidates
(history excluded, as at serving; negatives the user has anywhere in train dropped). Loss: sampled
softmax of each positive against the list's negatives. The frozen two-tower model is part of the
ranker (its score is a residual input and the top MLP starts at zero), so epoch 0 is exactly the
retrieval order and training learns corrections.

``loss="pointwise"`` keeps the earlier recipe (BCE on each positive + hard/random/popular negatives).

Early stopping and model selection on validation NDCG@``eval_k`` (each user's last train
interaction) after re-ranking retrieval's top ``n_candidates``; epoch 0 (retrieval order) competes,
so a ranker that does not beat retrieval on validation falls back to retrieval's order."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cascade.models.dlrm import DLRMConfig
from cascade.workflows.train_retrieval import (
    embed, history_rows, module_device, seed_everything, to_torch, top_k_rows, training_device,
)
from cascade.workflows.training_data import EncodedCatalog, Examples, TrainingData, user_segments


@dataclass
class RankingTrainConfig:
    epochs: int = 4
    loss: str = "listwise"            # "listwise" (softmax over retrieval candidates) or "pointwise" (BCE)
    batch_size: int = 4096            # pointwise: rows per step
    lr: float = 5e-4                  # measured on MovieLens: 2e-3 overfits after one epoch
    weight_decay: float = 1e-6
    patience: int = 2
    seed: int = 0
    threads: int = 2
    device: str = "cpu"  # "cpu" or "cuda" (cascade train --device)
    positives_per_user: int = 10      # listwise: max positives per query; fallback rows when no held-out rows
    list_negatives: int = 32          # listwise: negatives per query, uniform from the candidate list
    queries_per_batch: int = 128      # listwise: queries per step
    positives_in_candidates: bool = True  # listwise: only positives inside the candidate list count
    rank_holdout: int = 10            # ranking window per user (held out from retrieval training): at most
    rank_fraction: float | None = 0.1  # ... min(rank_holdout, ceil(rank_fraction x n_user_train)) rows
    recent_fraction: float = 0.1      # "recent popularity" = count in the last 10% of the train time range
    n_hard: int = 3
    n_random: int = 1
    n_popular: int = 1
    min_steps_per_epoch: int = 40
    hard_pool: int = 300              # hard negatives from retrieval's top-``hard_pool`` (= serving candidates)
    n_candidates: int = 300           # validation: re-rank retrieval's top-N
    eval_k: int = 10
    eval_examples: int = 2000
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
    best_ndcg: float = float("nan")
    retrieval_ndcg: float = float("nan")
    candidate_recall: float = float("nan")  # validation: share of positives inside the merged candidates
    mix: Any = None  # the SourceMix the candidates were merged with (item-to-item share tuned on validation)
    mix_table: list[dict[str, float]] = field(default_factory=list)
    blend_table: list[dict[str, float]] = field(default_factory=list)  # epoch-0 item-to-item weight search


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


def top_candidates(q: np.ndarray, v: np.ndarray, exclude: np.ndarray, k: int, chunk: int | None = None) -> np.ndarray:
    """[n, k] catalog rows by retrieval score (best first), ``exclude`` rows (-1 = none) masked;
    query blocks sized to the catalog (:func:`top_k_rows`), never a full users x items matrix."""
    return top_k_rows(q, v, exclude, k, chunk)


def sample_negatives(
    rng: np.random.Generator, examples: Examples, catalog: EncodedCatalog, seen: SeenSet, hard: np.ndarray,
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


def item_statistics(data: TrainingData, id_index: np.ndarray, cardinality: int, recent_fraction: float) -> np.ndarray:
    """[cardinality, 2] standardised per encoded item id: log1p(train count) and log1p(count in the
    last ``recent_fraction`` of the train time range); OOV buckets get their members' mean."""
    parts = [data.train] + ([data.rank] if data.rank is not None else []) + [data.val]
    rows = np.concatenate([p.item_rows for p in parts])
    times = np.concatenate([p.timestamps for p in parts])
    n_items = len(data.catalog.item_ids)
    lo, hi = (times.min(), times.max()) if len(times) else (0, 0)
    cutoff = hi - recent_fraction * (hi - lo)
    total = np.bincount(rows, minlength=n_items).astype(np.float64)
    recent = np.bincount(rows[times >= cutoff], minlength=n_items).astype(np.float64)
    stats = np.stack([np.log1p(total), np.log1p(recent)], axis=1)
    out = np.zeros((cardinality, 2))
    members = np.bincount(id_index, minlength=cardinality).astype(np.float64)
    for j in range(2):
        out[:, j] = np.bincount(id_index, weights=stats[:, j], minlength=cardinality) / np.maximum(members, 1)
    used = members > 0
    mean, std = out[used].mean(0), out[used].std(0) + 1e-6
    out = np.where(used[:, None], (out - mean) / std, 0.0)
    return out.astype(np.float32)


@dataclass
class ListwiseQueries:
    """One ranking query per user: the features before the user's held-out ranking window, and the
    window's items as the (possibly several) positives; candidates = retrieval's top list."""

    features: dict[str, np.ndarray]
    user_ids: np.ndarray
    history: np.ndarray
    positives: np.ndarray  # [Q, P] catalog rows, -1 padded


def listwise_queries(examples: Examples, max_positives: int) -> ListwiseQueries:
    """Group user-sorted ``examples`` (rows in time order) by user: query = the first row's features."""
    starts, ends = user_segments(examples.user_ids)
    p = int(min(max_positives, (ends - starts).max())) if len(starts) else 1
    pos = np.full((len(starts), p), -1, np.int64)
    for j in range(p):
        has = starts + j < ends
        pos[has, j] = examples.item_rows[starts[has] + j]
    return ListwiseQueries({k: v[starts] for k, v in examples.features.items()}, examples.user_ids[starts],
                           examples.history[starts], pos)


def listwise_loss(scores: Any, positive_mask: Any, valid: Any) -> Any:
    """Sampled softmax over each query's list: mean over positives of
    -log(exp(s_pos) / (exp(s_pos) + sum over the list's negatives of exp(s_neg)))."""
    import torch

    neg = scores.masked_fill(positive_mask | ~valid, -1e9)
    neg_lse = torch.logsumexp(neg, dim=1, keepdim=True)  # [Q, 1]
    per = torch.logaddexp(scores, neg_lse) - scores      # [Q, L]
    mask = positive_mask & valid
    return (per * mask).sum() / mask.sum().clamp(min=1)


def rerank_metrics(
    model: Any, examples: Examples, catalog: EncodedCatalog, q: np.ndarray, v: np.ndarray, candidates: np.ndarray, k: int,
    retrieval_order: bool = False, lists: Any | None = None,
) -> tuple[float, float]:
    """(recall@k, NDCG@k) of the single positive after DLRM re-ranking of ``candidates`` ([n, c]
    catalog rows, -1 padded; retrieval/merge order when ``retrieval_order``). ``lists``: the
    :class:`~cascade.workflows.candidates.CandidateLists` the candidates come from (their source and
    item-to-item score feed the ranker)."""
    import torch

    n, c = candidates.shape
    if retrieval_order:
        top = candidates[:, :k]
    else:
        scores = np.empty((n, c), np.float32)
        chunk = max(1, 32768 // max(c, 1))
        model.eval()
        device = module_device(model.forward)
        with torch.no_grad():
            for lo in range(0, n, chunk):
                rows = np.arange(lo, min(n, lo + chunk))
                user_row = torch.from_numpy(np.repeat(np.arange(len(rows), dtype=np.int64), c)).to(device)
                items = np.maximum(candidates[rows].reshape(-1), 0)
                feats = {**to_torch(examples.features, rows, device), **to_torch(catalog.features, items, device)}
                if lists is not None:
                    feats.update({name: t.to(device) for name, t in
                                  lists.torch_features(np.repeat(rows, c), candidates[rows].reshape(-1)).items()})
                s = model(feats, query=torch.from_numpy(q[rows]).to(device), item=torch.from_numpy(v[items]).to(device),
                          user_row=user_row)
                scores[rows] = s.cpu().numpy().reshape(len(rows), c)
        scores[candidates < 0] = -np.inf
        top = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
    hit = top == examples.item_rows[:, None]
    recall = float(hit.any(axis=1).mean())
    ndcg = float((hit / np.log2(np.arange(2, k + 2))[None, :]).sum(axis=1).mean())
    return recall, ndcg


def rerank_recall(
    model: Any, examples: Examples, catalog: EncodedCatalog, q: np.ndarray, v: np.ndarray, candidates: np.ndarray, k: int,
) -> tuple[float, float]:
    """(recall@k after DLRM re-ranking, recall@k of retrieval order) on ``examples``."""
    return (rerank_metrics(model, examples, catalog, q, v, candidates, k)[0],
            rerank_metrics(model, examples, catalog, q, v, candidates, k, retrieval_order=True)[0])


def _pointwise_epoch(
    model: Any, optimizer: Any, rng: np.random.Generator, positives: Examples, catalog: EncodedCatalog, seen: SeenSet,
    hard: np.ndarray, q: np.ndarray, v: np.ndarray, config: RankingTrainConfig, desc: str,
) -> tuple[float, int]:
    import torch
    from cascade.progress import progress_bar

    ex, items, labels = sample_negatives(rng, positives, catalog, seen, hard, config)
    order = rng.permutation(len(ex))
    batch_size = max(64, min(config.batch_size, len(ex) // config.min_steps_per_epoch))
    steps = (len(ex) + batch_size - 1) // batch_size
    loss_fn = torch.nn.BCEWithLogitsLoss()
    device = module_device(model.forward)
    running = 0.0
    bar = progress_bar(range(steps), desc=desc, enabled=config.progress, leave=False)
    for step in bar:
        b = order[step * batch_size:(step + 1) * batch_size]
        e, it = ex[b], items[b]
        feats = {**to_torch(positives.features, e, device), **to_torch(catalog.features, it, device)}
        logits = model(feats, query=torch.from_numpy(q[e]).to(device), item=torch.from_numpy(v[it]).to(device))
        loss = loss_fn(logits, torch.from_numpy(labels[b]).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = 0.95 * running + 0.05 * loss.item() if step else loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
    bar.close()
    return running, len(ex)


def _listwise_epoch(
    model: Any, optimizer: Any, rng: np.random.Generator, queries: ListwiseQueries, catalog: EncodedCatalog, seen: SeenSet,
    candidates: np.ndarray, q: np.ndarray, v: np.ndarray, config: RankingTrainConfig, desc: str,
    candidate_lists: Any | None = None,
) -> tuple[float, int]:
    """One pass over the queries: each list = the query's positives + ``list_negatives`` drawn
    uniformly from its retrieval candidates (the serving distribution), minus train items."""
    import torch
    from cascade.progress import progress_bar

    n_q, c = candidates.shape
    positives = queries.positives
    if config.positives_in_candidates:
        # the ranker only ever re-orders retrieval's list: positives retrieval missed teach nothing it can use
        inside = (positives[:, :, None] == candidates[:, None, :]).any(axis=2)
        positives = np.where(inside, positives, -1)
    n_neg = min(config.list_negatives, c)
    cols = np.argsort(rng.random((n_q, c)), axis=1)[:, :n_neg]
    negs = np.take_along_axis(candidates, cols, axis=1)
    bad = seen.contains(np.repeat(queries.user_ids, n_neg), negs.reshape(-1)).reshape(n_q, n_neg)
    bad |= (negs[:, :, None] == queries.positives[:, None, :]).any(axis=2)
    negs = np.where(bad, -1, negs)
    keep = (positives >= 0).any(axis=1)
    lists = np.concatenate([positives, negs], axis=1)[keep]  # [Q', P + N]: queries with a usable positive
    is_pos = np.zeros(lists.shape, bool)
    is_pos[:, : positives.shape[1]] = True
    qrows = np.flatnonzero(keep)
    valid = lists >= 0
    n_q = len(lists)
    per_batch = max(4, min(config.queries_per_batch, n_q // config.min_steps_per_epoch))
    order = rng.permutation(n_q)
    steps = (n_q + per_batch - 1) // per_batch
    running, rows_seen = 0.0, 0
    device = module_device(model.forward)
    bar = progress_bar(range(steps), desc=desc, enabled=config.progress, leave=False)
    for step in bar:
        b = order[step * per_batch:(step + 1) * per_batch]
        lb, vb = lists[b], valid[b]
        e = np.repeat(qrows[b], lb.shape[1])[vb.reshape(-1)]
        it = lb[vb]
        feats = {**to_torch(queries.features, e, device), **to_torch(catalog.features, it, device)}
        if candidate_lists is not None:
            feats.update({name: t.to(device) for name, t in candidate_lists.torch_features(e, it).items()})
        flat = model(feats, query=torch.from_numpy(q[e]).to(device), item=torch.from_numpy(v[it]).to(device))
        scores = torch.full(lb.shape, -1e9, device=device)
        vbt = torch.from_numpy(vb).to(device)
        scores[vbt] = flat
        loss = listwise_loss(scores, torch.from_numpy(is_pos[b]).to(device), vbt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        rows_seen += len(it)
        running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
    bar.close()
    return running, rows_seen


CANDIDATE_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def _pick_candidate_weight(
    model: Any, val: Examples, catalog: EncodedCatalog, val_q: np.ndarray, v: np.ndarray, candidates: np.ndarray,
    k: int, lists: Any, retrieval_ndcg: float, retrieval_recall: float, config: "RankingTrainConfig",
) -> tuple[float, float, list[dict[str, float]]]:
    """Set the DLRM's item-to-item residual weight (0 at init) to the value of ``CANDIDATE_WEIGHTS``
    with the best validation NDCG@k of the untrained ranker (retrieval score + w x log1p(item-to-item
    score)); keep 0 when none beats the retrieval order. Returns (NDCG, recall, the search table):
    the "epoch 0" that training must beat. A handful of optimiser steps could never move the
    weight that far (measured on MovieLens-100k: the ranker ignored the feature)."""
    import torch

    table = [{"candidate_weight": 0.0, f"val_ndcg@{k}": retrieval_ndcg, f"val_recall@{k}": retrieval_recall}]
    best_w, best_ndcg, best_recall = 0.0, retrieval_ndcg, retrieval_recall
    for w in CANDIDATE_WEIGHTS:
        with torch.no_grad():
            model.candidate_weight.fill_(w)
        recall, ndcg = rerank_metrics(model, val, catalog, val_q, v, candidates, k, lists=lists)
        table.append({"candidate_weight": w, f"val_ndcg@{k}": ndcg, f"val_recall@{k}": recall})
        if config.progress:
            print(f"ranking epoch 0: item-to-item weight {w:g}: val ndcg@{k} {ndcg:.4f} recall@{k} {recall:.4f}")
        if ndcg > best_ndcg:
            best_w, best_ndcg, best_recall = w, ndcg, recall
    with torch.no_grad():
        model.candidate_weight.fill_(best_w)
    return best_ndcg, best_recall, table


def train_dlrm(data: TrainingData, two_tower: Any, config: RankingTrainConfig | None = None,
               init: Callable[[Any], None] | None = None, neighbours: Any | None = None, mix: Any | None = None,
               tune_mix: bool = True) -> RankingResult:
    """``init(model)`` runs once on the fresh model before training (warm start: cascade/events/warm_start.py).
    ``neighbours``/``mix``: the item-to-item artifact and source shares serving merges with
    (:mod:`cascade.online.candidates`); the ranker is trained and validated on those merged
    candidates (ANN only when ``neighbours`` is None). ``tune_mix``: first pick the item-to-item
    share with the best candidate recall on the validation rows (``RankingResult.mix``)."""
    import torch

    from cascade.models.dlrm import DLRM, candidate_specs
    from cascade.workflows.candidates import merged_candidate_lists, tune_item2item_share

    config = config or RankingTrainConfig()
    if config.loss not in ("listwise", "pointwise"):
        raise ValueError(f"ranking loss must be 'listwise' or 'pointwise', got {config.loss!r}")
    device = training_device(config.device)
    seed_everything(config.seed, config.threads)
    rng = np.random.default_rng(config.seed + 1)
    started = time.perf_counter()
    two_tower.eval()
    specs = list(data.specs) + (candidate_specs() if config.model.candidate_features else [])
    model = DLRM(specs, config.model, two_tower=two_tower)
    if init is not None:
        init(model)
    catalog = data.catalog
    if model.n_stats:
        id_index = catalog.features[config.model.item_id_column].astype(np.int64)
        model.set_item_stats(torch.from_numpy(
            item_statistics(data, id_index, model.item_stats.shape[0], config.recent_fraction)[:, : model.n_stats]
        ))
    if data.rank is not None and len(data.rank):
        positives = data.rank  # held out from retrieval training: unbiased retrieval scores
    else:
        positives = data.train.subset(recent_positive_rows(data.train.user_ids, config.positives_per_user))
    model.to(device)  # the frozen two-tower inside it too
    v = embed(two_tower.item, catalog.features)
    seen = SeenSet(
        np.concatenate([data.train.user_ids, data.val.user_ids] + ([data.rank.user_ids] if data.rank is not None else [])),
        np.concatenate([data.train.item_rows, data.val.item_rows] + ([data.rank.item_rows] if data.rank is not None else [])),
        len(catalog.item_ids),
    )
    val = data.val
    if len(val) > config.eval_examples:
        val = val.subset(np.sort(rng.choice(len(val), config.eval_examples, replace=False)))
    val_q = embed(two_tower.query, val.features)
    mix_table: list[dict[str, float]] = []
    if neighbours is not None and mix is not None and tune_mix:
        # the item-to-item share of the candidates: best candidate recall on validation (carved from train)
        recent = history_rows(catalog, val.history)
        mix, mix_table = tune_item2item_share(
            top_candidates(val_q, v, recent, config.n_candidates), recent, val.item_rows, catalog.popularity,
            neighbours, mix, config.n_candidates,
        )

    def merged(query: np.ndarray, history: np.ndarray, n: int) -> Any:
        recent = history_rows(catalog, history)
        return merged_candidate_lists(top_candidates(query, v, recent, n), recent, catalog.popularity, neighbours,
                                      mix, n)

    lists = None
    if config.loss == "listwise":
        queries = listwise_queries(positives, config.positives_per_user)
        q = embed(two_tower.query, queries.features)
        lists = merged(q, queries.history, config.hard_pool)
        cands = lists.rows
        n_positives = int((queries.positives >= 0).sum())
    else:
        q = embed(two_tower.query, positives.features)
        cands = top_candidates(q, v, history_rows(catalog, positives.history), config.hard_pool)
        n_positives = len(positives)
    val_lists = merged(val_q, val.history, config.n_candidates)
    val_candidates = val_lists.rows
    k = config.eval_k
    retrieval_recall, retrieval_ndcg = rerank_metrics(model, val, catalog, val_q, v, val_candidates, k, retrieval_order=True)
    candidate_recall = float((val_candidates == val.item_rows[:, None]).any(axis=1).mean()) if len(val) else 0.0
    blend_table: list[dict[str, float]] = []
    start_ndcg, start_recall = retrieval_ndcg, retrieval_recall
    if getattr(model, "has_candidate_score", False) and len(val):
        # epoch 0 = retrieval score + w x item-to-item score, w picked on validation NDCG (w = 0: retrieval order)
        start_ndcg, start_recall, blend_table = _pick_candidate_weight(
            model, val, catalog, val_q, v, val_candidates, k, val_lists, retrieval_ndcg, retrieval_recall, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    # epoch 0 = the untrained ranker: the retrieval order (zero-initialised correction), plus the
    # item-to-item residual at the weight picked above
    best, best_epoch, bad = start_ndcg, 0, 0
    best_recall = start_recall
    best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    n_rows = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        desc = f"ranking epoch {epoch}/{config.epochs}"
        if config.loss == "listwise":
            running, n_rows = _listwise_epoch(model, optimizer, rng, queries, catalog, seen, cands, q, v, config, desc,
                                              lists)
        else:
            running, n_rows = _pointwise_epoch(model, optimizer, rng, positives, catalog, seen, cands, q, v, config, desc)
        recall, ndcg = rerank_metrics(model, val, catalog, val_q, v, val_candidates, k, lists=val_lists)
        history.append({"epoch": epoch, "loss": running, f"val_recall@{k}": recall, f"val_ndcg@{k}": ndcg,
                        f"val_retrieval_recall@{k}": retrieval_recall, f"val_retrieval_ndcg@{k}": retrieval_ndcg})
        if config.progress:
            print(f"ranking epoch {epoch}: loss {running:.4f}  val ndcg@{k} {ndcg:.4f} recall@{k} {recall:.4f} "
                  f"(retrieval order {retrieval_ndcg:.4f} / {retrieval_recall:.4f})")
        if ndcg > best:
            best, best_recall, best_epoch, bad = ndcg, recall, epoch, 0
            best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
        else:
            bad += 1
            if bad > config.patience:
                break
    model.load_state_dict(best_state)
    model.to("cpu").eval()  # saved and exported to ONNX on the CPU
    return RankingResult(model, history, best_epoch, best_recall, retrieval_recall, time.perf_counter() - started,
                         n_positives, n_rows, best_ndcg=best, retrieval_ndcg=retrieval_ndcg,
                         candidate_recall=candidate_recall, mix=mix, mix_table=mix_table, blend_table=blend_table)


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
        "inputs": [s.name for s in model.specs] + ["user_row"],
        "candidate_features": model.config.candidate_features,
        "input_axes": {"user": "users (U)", "item": "batch (N)", "user_row": "batch (N), int64 row into the users axis"},
        "outputs": {"dlrm.onnx": "score"},
        "score": "logit",
        "uses_retrieval_score": model.two_tower is not None,
        "training": {
            "epochs": result.epochs, "best_epoch": result.best_epoch,
            f"val_recall@{config.eval_k}": result.best_recall,
            f"val_retrieval_recall@{config.eval_k}": result.retrieval_recall,
            f"val_ndcg@{config.eval_k}": result.best_ndcg,
            f"val_retrieval_ndcg@{config.eval_k}": result.retrieval_ndcg,
            f"val_candidate_recall@{config.n_candidates}": result.candidate_recall,
            "candidate_mix": result.mix.to_dict() if result.mix is not None else None,
            "candidate_mix_tuning": result.mix_table,
            "candidate_weight_search": result.blend_table,
            "seconds": round(result.seconds, 1), "n_positives": result.n_positives, "n_rows_per_epoch": result.n_rows,
        },
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_dlrm(ranking_dir: Path, two_tower: Any | None) -> Any:
    from cascade.models.checkpoint import load_dlrm as load

    return load(ranking_dir, two_tower)
