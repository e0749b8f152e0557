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


def test_item_to_item_neighbours_join_the_ann_candidates(index_dir: Path, tmp_path: Path) -> None:
    """With a candidates/ artifact the stage merges neighbours of the recent items into the ANN list
    (sources and scores travel with each row); without it, the ANN order is unchanged."""
    from cascade.online.candidates import ANN, ITEM2ITEM, ItemNeighbours, SourceMix

    query = np.load(index_dir / "query.npy")
    item_ids = np.load(index_dir / "item_ids.npy")
    plain = RetrievalStage(index_dir, n_candidates=10)
    ann_only = plain.retrieve(query, False, np.empty(0, np.int64), np.empty(0, np.int64))
    top20 = RetrievalStage(index_dir, n_candidates=20).retrieve(query, False, np.empty(0, np.int64),
                                                                np.empty(0, np.int64))
    outside = np.setdiff1d(np.setdiff1d(np.arange(50), top20), [7])[:3]  # never in the ANN list
    rows = np.full((50, 3), -1, np.int32)
    weights = np.zeros((50, 3), np.float32)
    rows[7, :3], weights[7, :3] = outside, [0.9, 0.5, 0.1]
    ItemNeighbours(rows, weights, {"mix": SourceMix(item2item=0.3, popular=0.0).to_dict()}).save(tmp_path / "cand")
    stage = RetrievalStage(index_dir, n_candidates=10, candidates_dir=tmp_path / "cand")
    merged = stage.retrieve_sources(query, False, np.array([item_ids[7]]), np.empty(0, np.int64),
                                    recent=np.array([item_ids[7], 999_999]))
    assert len(merged.rows) == 10 and set(outside.tolist()) <= set(merged.rows.tolist())
    assert 7 not in merged.rows  # seen
    by_row = dict(zip(merged.rows.tolist(), merged.source.tolist()))
    assert all(by_row[r] == ITEM2ITEM for r in outside) and by_row[int(ann_only[0])] & ANN
    scores = dict(zip(merged.rows.tolist(), merged.item2item_score.tolist()))
    assert scores[int(outside[0])] == pytest.approx(0.9)
    missing = RetrievalStage(index_dir, n_candidates=10, candidates_dir=tmp_path / "absent")
    assert np.array_equal(missing.retrieve(query, False, np.empty(0, np.int64), np.empty(0, np.int64),
                                           recent=np.array([item_ids[7]])), ann_only)
