"""RetrievalStage on a real (tiny) FAISS index: excluded items never come back, seen items only
when the business rules say ``drop_seen`` (one setting for retrieval and business_logic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.online.stages import RetrievalStage


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import faiss

    folder = tmp_path_factory.mktemp("index")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    index = faiss.IndexFlatIP(8)
    index.add(vectors)
    faiss.write_index(index, str(folder / "items.faiss"))
    np.save(folder / "item_ids.npy", np.arange(1000, 1050, dtype=np.int64))
    np.save(folder / "popularity.npy", np.arange(50, 0, -1).astype(np.float32))
    np.save(folder / "query.npy", vectors[:1] * 3)
    return folder


@pytest.mark.parametrize("cold_start", [False, True])
def test_seen_items_follow_drop_seen_and_excluded_never_return(index_dir: Path, cold_start: bool) -> None:
    query = np.load(index_dir / "query.npy")
    item_ids = np.load(index_dir / "item_ids.npy")
    everything = RetrievalStage(index_dir, n_candidates=50).retrieve(query, cold_start, np.empty(0, np.int64),
                                                                     np.empty(0, np.int64))
    seen, exclude = item_ids[everything[:3]], item_ids[everything[3:5]]
    dropping = RetrievalStage(index_dir, n_candidates=50, drop_seen=True)
    keeping = RetrievalStage(index_dir, n_candidates=50, drop_seen=False)
    dropped = set(item_ids[dropping.retrieve(query, cold_start, seen, exclude)].tolist())
    kept = set(item_ids[keeping.retrieve(query, cold_start, seen, exclude)].tolist())
    assert not dropped & set(seen.tolist()) and not dropped & set(exclude.tolist())
    assert set(seen.tolist()) <= kept and not kept & set(exclude.tolist())
    assert len(kept) == 48 and len(dropped) == 45
