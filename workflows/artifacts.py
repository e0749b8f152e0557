"""The model-artifact folder of docs/DESIGN.md ("Model artifacts") and the one-command training
run that fills it, cached by input hash (dataset content hash + config + code).

```
workflow/                   fitted preprocessing workflow
retrieval/user_tower.onnx   output "query" [B, D]          retrieval/item_tower.onnx  output "item_embedding" [B, D]
retrieval/meta.json         (+ model.pt: torch weights, for `cascade train ranking`)
ranking/dlrm.onnx           user inputs [U], item inputs [N], user_row [N] -> "score" [N] (logit); ranking/meta.json (+ model.pt)
index/items.faiss, index/item_ids.npy, index/popularity.npy, index/meta.json
train.json                  summary: dataset, config, timings
```
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cascade.errors import NotFoundError
from cascade.workflows.candidates import CandidatesConfig
from cascade.workflows.index import IndexConfig
from cascade.workflows.train_ranking import RankingTrainConfig
from cascade.workflows.train_retrieval import RetrievalTrainConfig

REQUIRED_FILES = (
    "workflow",
    "retrieval/user_tower.onnx",
    "retrieval/item_tower.onnx",
    "retrieval/meta.json",
    "ranking/dlrm.onnx",
    "ranking/meta.json",
    "index/items.faiss",
    "index/item_ids.npy",
    "index/popularity.npy",
    "index/meta.json",
    "candidates/neighbours.npy",
    "candidates/weights.npy",
)
SUMMARY_FILE = "train.json"
CODE_FILES = (
    "cascade/models", "workflows/training_data.py", "workflows/train_retrieval.py", "workflows/train_ranking.py",
    "workflows/onnx_export.py", "workflows/index.py", "workflows/artifacts.py", "preprocessing",
    "workflows/candidates.py", "cascade/online/candidates.py", "workflows/baselines.py",
)


@dataclass
class TrainConfig:
    retrieval: RetrievalTrainConfig = field(default_factory=RetrievalTrainConfig)
    ranking: RankingTrainConfig = field(default_factory=RankingTrainConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"retrieval": self.retrieval.to_dict(), "ranking": self.ranking.to_dict(), "index": asdict(self.index),
                "candidates": asdict(self.candidates)}

    def cache_dict(self) -> dict[str, Any]:
        """The parts that change the result (not progress bars, thread counts or the device: a GPU
        run gives the CPU's results within float tolerance, tests/unit/workflows/test_train_device.py)."""
        payload = self.to_dict()
        for part in ("retrieval", "ranking"):
            payload[part].pop("progress", None)
            payload[part].pop("threads", None)
            payload[part].pop("device", None)
        return payload


@dataclass(frozen=True)
class ArtifactLayout:
    root: Path

    @property
    def workflow(self) -> Path:
        return self.root / "workflow"

    @property
    def retrieval(self) -> Path:
        return self.root / "retrieval"

    @property
    def ranking(self) -> Path:
        return self.root / "ranking"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def candidates(self) -> Path:
        return self.root / "candidates"

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_FILE

    def missing(self) -> list[str]:
        return [name for name in REQUIRED_FILES if not (self.root / name).exists()]

    def check(self) -> "ArtifactLayout":
        missing = self.missing()
        if missing:
            raise NotFoundError(f"artifact folder {self.root} is incomplete: missing {missing} (run `cascade train`)")
        return self


def default_artifacts_dir(data_dir: Path) -> Path:
    from cascade.paths import build_dir
    from cascade.workflows.dataset import DatasetInfo

    info = DatasetInfo.load(Path(data_dir))
    return build_dir() / "artifacts" / f"{info.name}-{info.content_hash[:10]}"


def code_hash() -> str:
    from cascade.cache import hash_files
    from cascade.paths import PROJECT_ROOT

    return hash_files([PROJECT_ROOT / p for p in CODE_FILES if (PROJECT_ROOT / p).exists()])


def cache_key(data_dir: Path, config: TrainConfig) -> str:
    from cascade.cache import inputs_hash
    from cascade.workflows.dataset import DatasetInfo

    info = DatasetInfo.load(Path(data_dir))
    return inputs_hash(dataset=info.content_hash, config=config.cache_dict(), code=code_hash())


def fit_workflow(data_dir: Path, out_dir: Path, progress: bool = True) -> Any:
    from cascade.preprocessing.defaults import default_workflow
    from cascade.workflows.dataset import DatasetInfo

    fitted = default_workflow(DatasetInfo.load(Path(data_dir))).fit(Path(data_dir), progress=progress)
    fitted.save(Path(out_dir))
    return fitted


def load_workflow(path: Path) -> Any:
    from cascade.preprocessing.fitted import FittedWorkflow

    if not Path(path).exists():
        raise NotFoundError(f"{path} holds no fitted workflow (run `cascade train`)")
    return FittedWorkflow.load(Path(path))


def item_queries(model: Any, data: Any) -> Any:
    """Validation queries (for measuring approximate-index recall on the real query distribution)."""
    from cascade.workflows.train_retrieval import embed

    return embed(model.query, data.val.features) if len(data.val) else None


def run_retrieval(layout: ArtifactLayout, data: Any, config: TrainConfig,
                  init: Callable[[Any], None] | None = None) -> tuple[Any, dict, dict]:
    """Two-tower + the index over the catalog. ``init(model)``: the warm-start hook (``cascade retrain``)."""
    from cascade.workflows.index import write_index
    from cascade.workflows.train_retrieval import embed, save_retrieval, train_two_tower

    result = train_two_tower(data, config.retrieval, init=init)
    meta = save_retrieval(result, config.retrieval, layout.retrieval)
    vectors = embed(result.model.item, data.catalog.features)
    index_meta = write_index(
        layout.index, vectors, data.catalog.item_ids, data.catalog.popularity, config.index,
        queries=item_queries(result.model, data),
    )
    return result.model, meta, index_meta


def run_candidates(layout: ArtifactLayout, data: Any, config: TrainConfig) -> Any:
    """The item-to-item neighbour artifact (``candidates/``), fitted on the interactions the towers
    train on (the ranking window and validation rows held out, so the ranker's item-to-item scores
    are not inflated by fitting on its own positives)."""
    from cascade.workflows.candidates import build_item_neighbours, interactions_of

    frame = interactions_of(data.train.user_ids, data.train.item_rows, data.train.timestamps, data.catalog.item_ids)
    neighbours = build_item_neighbours(data.catalog.item_ids, frame, config.candidates,
                                       progress=config.ranking.progress)
    neighbours.save(layout.candidates)
    return neighbours


def run_ranking(layout: ArtifactLayout, data: Any, two_tower: Any, config: TrainConfig,
                init: Callable[[Any], None] | None = None) -> dict:
    """The item-to-item neighbours, then the DLRM trained on the candidates serving merges (its
    ``candidate_source``/``candidate_score`` features filled as online). ``init(model)``: the
    warm-start hook (``cascade retrain`` uses this same path)."""
    from cascade.workflows.train_ranking import save_ranking, train_dlrm

    neighbours = run_candidates(layout, data, config)
    result = train_dlrm(data, two_tower, config.ranking, init=init, neighbours=neighbours, mix=config.candidates.mix(),
                        tune_mix=config.candidates.tune_share)
    if result.mix is not None:  # serving merges with the mix the ranker was trained on
        neighbours.meta["mix"] = result.mix.to_dict()
        neighbours.meta["mix_tuning"] = result.mix_table
        neighbours.save(layout.candidates)
    meta = save_ranking(result, config.ranking, layout.ranking)
    meta["training"]["candidates"] = {k: neighbours.meta.get(k) for k in ("method", "lambda", "top_m", "seconds")}
    return meta


def write_summary(layout: ArtifactLayout, data_dir: Path, config: TrainConfig, timings: dict[str, float], key: str) -> dict:
    from cascade.workflows.dataset import DatasetInfo

    info = DatasetInfo.load(Path(data_dir))
    summary: dict[str, Any] = {}
    if layout.summary.is_file():
        summary = json.loads(layout.summary.read_text())
    summary.update({
        "dataset": {"path": str(Path(data_dir).resolve()), "name": info.name, "content_hash": info.content_hash},
        "config": config.to_dict(),
        "inputs_hash": key,
    })
    summary.setdefault("seconds", {}).update({k: round(v, 1) for k, v in timings.items()})
    layout.summary.write_text(json.dumps(summary, indent=2))
    return summary


def train_all(
    data_dir: Path, out_dir: Path | None = None, config: TrainConfig | None = None, *, progress: bool = True,
    force: bool = False, log: Callable[[str], None] = print,
) -> tuple[ArtifactLayout, dict, bool]:
    """Fit the workflow, train retrieval, build the index, train ranking into ``out_dir``.

    Returns (layout, summary, cached). Writes into a temporary sibling folder renamed into place,
    so a failed run never leaves a half-written artifact folder."""
    from cascade.cache import is_fresh, mark_done, replace_dir
    from cascade.workflows.dataset import load_dataset
    from cascade.workflows.training_data import prepare

    config = config or TrainConfig()
    data_dir = Path(data_dir)
    load_dataset(data_dir)
    out = Path(out_dir) if out_dir else default_artifacts_dir(data_dir)
    key = cache_key(data_dir, config)
    layout = ArtifactLayout(out)
    if not force and is_fresh(out, key) and not layout.missing():
        return layout, json.loads(layout.summary.read_text()), True
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        work = ArtifactLayout(tmp)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        fitted = fit_workflow(data_dir, work.workflow, progress=progress)
        timings["fit_workflow"] = time.perf_counter() - t
        t = time.perf_counter()
        log("building leave-future-out training examples")
        data = prepare(fitted, data_dir, rank_holdout=config.ranking.rank_holdout,
                       rank_fraction=config.ranking.rank_fraction)
        timings["examples"] = time.perf_counter() - t
        t = time.perf_counter()
        two_tower, retrieval_meta, index_meta = run_retrieval(work, data, config)
        timings["retrieval+index"] = time.perf_counter() - t
        t = time.perf_counter()
        ranking_meta = run_ranking(work, data, two_tower, config)
        timings["ranking"] = time.perf_counter() - t
        summary = write_summary(work, data_dir, config, timings, key)
        summary["retrieval"] = retrieval_meta["training"]
        summary["ranking"] = ranking_meta["training"]
        summary["index"] = index_meta
        work.summary.write_text(json.dumps(summary, indent=2))
        mark_done(tmp, key)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ArtifactLayout(out), summary, False
