"""Train the two-tower retrieval model: in-batch sampled softmax with logQ popularity correction,
temperature, AdamW, early stopping on validation recall@K (each user's last train interaction),
seeded. Writes ``retrieval/`` (ONNX towers, meta.json, model.pt)."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cascade.models.two_tower import TwoTowerConfig
from cascade.workflows.training_data import PAD, EncodedCatalog, Examples, TrainingData


@dataclass
class RetrievalTrainConfig:
    epochs: int | None = None  # None: auto, see :func:`auto_epochs` (3 on the demo data, more on small data)
    min_examples_seen: int = 900_000  # auto epochs: enough passes over small datasets to see this many examples
    max_auto_epochs: int = 15
    batch_size: int = 1024  # measured: the B x B logits make 2048+ slower per example on 2 cores
    examples_per_epoch: int | None = 300_000  # fresh random draw each epoch (bounded CPU time)
    min_steps_per_epoch: int = 40             # small datasets: shrink the batch to get enough steps
    lr: float = 2e-3
    weight_decay: float = 1e-6
    patience: int = 1
    seed: int = 0
    threads: int = 2
    device: str = "cpu"  # "cpu" or "cuda" (cascade train --device; see training_device)
    eval_k: int = 100
    eval_examples: int = 5000
    max_examples: int | None = None
    progress: bool = True
    model: TwoTowerConfig = field(default_factory=TwoTowerConfig)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["model"] = self.model.to_dict()
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "RetrievalTrainConfig":
        payload = dict(payload)
        payload["model"] = TwoTowerConfig.from_dict(payload.get("model", {}))
        return cls(**payload)


@dataclass
class RetrievalResult:
    model: Any
    epochs: list[dict[str, float]]
    best_epoch: int
    best_recall: float
    seconds: float
    n_train: int
    n_val: int


def seed_everything(seed: int, threads: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(max(1, min(os.cpu_count() or 1, threads)))


def training_device(device: str) -> Any:
    """The torch device for ``cascade train --device``: "cpu", or "cuda" (also "cuda:N"), which
    must be usable: no silent CPU training when a GPU was asked for."""
    import torch

    from cascade.errors import InvalidInputError, UnavailableError

    name = str(device).lower()
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise InvalidInputError(f"--device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if name.startswith("cuda"):
        index = int(name.split(":")[1]) if ":" in name else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise UnavailableError(
                f"--device {device}: torch {torch.__version__} sees {torch.cuda.device_count()} CUDA device(s) "
                f"(CUDA build: {torch.version.cuda or 'none, a CPU-only build'}); train with --device cpu"
            )
    return torch.device(name)


def to_torch(features: dict[str, np.ndarray], rows: np.ndarray | None = None, device: Any = None) -> dict[str, Any]:
    import torch

    out = {}
    for name, value in features.items():
        v = value if rows is None else value[rows]
        t = torch.from_numpy(np.ascontiguousarray(v))
        out[name] = t if device is None else t.to(device, non_blocking=True)
    return out


def module_device(fn: Any) -> Any:
    """The device of the module a bound method (``model.query``) belongs to (None: unknown)."""
    owner = getattr(fn, "__self__", None)
    params = getattr(owner, "parameters", None)
    first = next(iter(params()), None) if params is not None else None
    return first.device if first is not None else None


def embed(fn: Any, features: dict[str, np.ndarray], batch: int = 8192) -> np.ndarray:
    """Run a tower (``model.query`` / ``model.item``) over numpy features in eval mode (on the
    tower's device; numpy float32 out)."""
    import torch

    n = len(next(iter(features.values())))
    device = module_device(fn)
    parts = []
    with torch.no_grad():
        for lo in range(0, n, batch):
            parts.append(fn(to_torch({k: v[lo:lo + batch] for k, v in features.items()}, device=device)).cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def history_rows(catalog: EncodedCatalog, history: np.ndarray) -> np.ndarray:
    """Catalog rows of a PAD-padded raw-id history matrix (-1 for padding/unknown)."""
    flat = history.reshape(-1)
    rows = catalog.rows(np.where(flat == PAD, 0, flat))
    rows[flat == PAD] = -1
    return rows.reshape(history.shape)


SCORE_BUDGET_BYTES = 256 << 20  # working set of one query block of scores, whatever the catalog size
SCORE_BYTES_PER_ITEM = 8  # float32 score + torch.topk's per-row working copy (measured: ~2x the scores)


def score_chunk(n_items: int, budget_bytes: int | None = None, cap: int = 4096) -> int:
    """Queries per block so that scoring a [block, n_items] block (scores + top-k working copy)
    fits ``budget_bytes`` (default :data:`SCORE_BUDGET_BYTES`, read at call time): 4096 queries on
    small catalogs, 33 on a 1M-item catalog."""
    budget = SCORE_BUDGET_BYTES if budget_bytes is None else budget_bytes
    return int(max(1, min(cap, budget // (SCORE_BYTES_PER_ITEM * max(int(n_items), 1)))))


def top_k_rows(
    queries: np.ndarray, items: np.ndarray, exclude_rows: np.ndarray, k: int, chunk: int | None = None,
) -> np.ndarray:
    """[n, min(k, n_items)] catalog rows by inner product (best first), ``exclude_rows`` [n, W]
    (-1 = none) masked out. Scores are computed in query blocks of ``chunk`` rows (default
    :func:`score_chunk`), so memory is bounded by chunk x n_items floats, never queries x items."""
    import torch

    n_items = items.shape[0]
    k = min(int(k), n_items)
    out = np.empty((len(queries), k), np.int64)
    if not len(queries) or k == 0:
        return out
    chunk = chunk or score_chunk(n_items)
    vt = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32)).T
    with torch.no_grad():
        for lo in range(0, len(queries), chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[lo:lo + chunk], dtype=np.float32))
            scores = q @ vt  # [chunk, n_items]
            ex = exclude_rows[lo:lo + chunk]
            r, c = np.nonzero(ex >= 0)
            if len(r):
                scores[torch.from_numpy(r), torch.from_numpy(ex[r, c])] = -np.inf
            out[lo:lo + len(q)] = torch.topk(scores, k, dim=1, largest=True, sorted=True).indices.numpy()
    return out


def next_item_recall(
    queries: np.ndarray, items: np.ndarray, positives: np.ndarray, exclude_rows: np.ndarray, k: int,
    chunk: int | None = None,
) -> float:
    """:func:`cascade.metrics.recall_at_k` of the exact top-k catalog rows with each example's one
    positive row as its relevant set (= the share of examples whose positive is in the top-k);
    earlier items excluded, a repeat of an earlier item still counts. Bounded memory: see
    :func:`top_k_rows`."""
    from cascade.metrics import recall_at_k

    if not len(queries):
        return 0.0
    exclude = np.where(exclude_rows == positives[:, None], -1, exclude_rows)
    top = top_k_rows(queries, items, exclude, k, chunk)
    return recall_at_k(top, [np.asarray([p], dtype=np.int64) for p in positives], top.shape[1])


def evaluate_recall(model: Any, catalog: EncodedCatalog, examples: Examples, k: int) -> float:
    model.eval()
    q = embed(model.query, examples.features)
    v = embed(model.item, catalog.features)
    return next_item_recall(q, v, examples.item_rows, history_rows(catalog, examples.history), k)


def auto_epochs(config: RetrievalTrainConfig, per_epoch: int) -> int:
    """``config.epochs`` if set, else max(3, min(max_auto_epochs, ceil(min_examples_seen / per_epoch))):
    3 epochs of 300k draws on the demo data; up to 15 passes on MovieLens-100k-sized data (early
    stopping on validation recall still decides which epoch is kept)."""
    if config.epochs is not None:
        return int(config.epochs)
    return int(max(3, min(config.max_auto_epochs, -(-config.min_examples_seen // max(per_epoch, 1)))))


def train_two_tower(data: TrainingData, config: RetrievalTrainConfig | None = None,
                    init: Callable[[Any], None] | None = None) -> RetrievalResult:
    """``init(model)`` runs once on the fresh model before training (warm start: cascade/events/warm_start.py)."""
    import torch
    from cascade.progress import progress_bar

    from cascade.models.two_tower import TwoTower, in_batch_softmax_loss

    config = config or RetrievalTrainConfig()
    device = training_device(config.device)
    seed_everything(config.seed, config.threads)
    rng = np.random.default_rng(config.seed)
    model = TwoTower(data.specs, config.model).to(device)
    if init is not None:
        init(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train = data.train
    if config.max_examples and len(train) > config.max_examples:
        train = train.subset(np.sort(rng.choice(len(train), config.max_examples, replace=False)))
    val = data.val
    if len(val) > config.eval_examples:
        val = val.subset(np.sort(rng.choice(len(val), config.eval_examples, replace=False)))
    pop = data.catalog.popularity.astype(np.float64) + 1.0
    log_q_all = np.log(pop / pop.sum()).astype(np.float32)
    per_epoch = min(len(train), config.examples_per_epoch or len(train))
    batch_size = max(64, min(config.batch_size, per_epoch // config.min_steps_per_epoch))
    steps = (per_epoch + batch_size - 1) // batch_size
    n_epochs = auto_epochs(config, per_epoch)
    total_steps = max(1, steps * n_epochs)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.1, anneal_strategy="cos",
    )
    history: list[dict[str, float]] = []
    best, best_epoch, best_state, bad = -1.0, 0, None, 0
    started = time.perf_counter()
    for epoch in range(1, n_epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        bar = progress_bar(range(steps), desc=f"retrieval epoch {epoch}/{n_epochs}", enabled=config.progress, leave=False)
        running = 0.0
        for step in bar:
            idx = np.sort(order[step * batch_size:min((step + 1) * batch_size, per_epoch)])
            if len(idx) < 2:
                continue
            rows = train.item_rows[idx]
            q = model.query(to_torch(train.features, idx, device))
            v = model.item(to_torch(data.catalog.features, rows, device))
            loss = in_batch_softmax_loss(
                q, v, torch.from_numpy(rows).to(device), torch.from_numpy(log_q_all[rows]).to(device),
                config.model.temperature, torch.from_numpy(train.weights[idx]).to(device),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}")
        bar.close()
        recall = evaluate_recall(model, data.catalog, val, config.eval_k)
        history.append({"epoch": epoch, "loss": running, f"val_recall@{config.eval_k}": recall})
        if config.progress:
            print(f"retrieval epoch {epoch}: loss {running:.4f}  val recall@{config.eval_k} {recall:.4f}")
        if recall > best:
            best, best_epoch, bad = recall, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad > config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu").eval()  # saved, exported to ONNX and indexed on the CPU
    return RetrievalResult(model, history, best_epoch, best, time.perf_counter() - started, len(train), len(val))


def save_retrieval(result: RetrievalResult, config: RetrievalTrainConfig, out_dir: Path) -> dict[str, Any]:
    """Write user_tower.onnx, item_tower.onnx, model.pt and meta.json into ``out_dir``."""
    import torch

    from cascade.workflows.onnx_export import export_two_tower

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = result.model
    export_two_tower(model, out_dir)
    torch.save(model.state_dict(), out_dir / "model.pt")
    meta = {
        "model": "two_tower",
        "dim": model.config.dim,
        "temperature": model.config.temperature,
        "config": config.to_dict(),
        "specs": [s.to_dict() for s in model.specs],
        "user_inputs": [s.name for s in model.user_inputs],
        "item_inputs": [s.name for s in model.item_inputs],
        "outputs": {"user_tower.onnx": "query", "item_tower.onnx": "item_embedding"},
        "training": {
            "epochs": result.epochs, "best_epoch": result.best_epoch,
            f"val_recall@{config.eval_k}": result.best_recall, "seconds": round(result.seconds, 1),
            "n_train_examples": result.n_train, "n_val_examples": result.n_val,
        },
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def load_two_tower(retrieval_dir: Path) -> Any:
    """Rebuild the torch two-tower model from ``retrieval/meta.json`` + ``model.pt``."""
    from cascade.models.checkpoint import load_two_tower as load

    return load(retrieval_dir)
